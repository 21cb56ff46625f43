//! The bar chart of `warmcache bench --chart`: medians per module and measurement, on a log
//! scale (a memory hit and a compile differ by seven orders of magnitude).

use std::path::Path;

use plotters::prelude::*;

use crate::commands::bench::Report;

const COLORS: [RGBColor; 10] = [
    RGBColor(0x4c, 0x72, 0xb0),
    RGBColor(0xdd, 0x84, 0x52),
    RGBColor(0x55, 0xa8, 0x68),
    RGBColor(0xc4, 0x4e, 0x52),
    RGBColor(0x81, 0x72, 0xb3),
    RGBColor(0x93, 0x78, 0x60),
    RGBColor(0xda, 0x8b, 0xc3),
    RGBColor(0x8c, 0x8c, 0x8c),
    RGBColor(0xcc, 0xb9, 0x74),
    RGBColor(0x64, 0xb5, 0xcd),
];

/// Writes the chart of `report` to `path` as SVG.
pub fn write(path: &Path, report: &Report) -> Result<(), Box<dyn std::error::Error>> {
    let names: Vec<&str> = report
        .modules
        .first()
        .map(|m| m.measurements.iter().map(|x| x.name.as_str()).collect())
        .unwrap_or_default();
    let (lo, hi) = decades(report)?;

    let groups = report.modules.len().max(1);
    let width = (220 * groups as u32 + 260).max(700);
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(width - 220);
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            format!(
                "warm start vs compile ({} {}, {} cpus, wasmtime {})",
                report.machine.os,
                report.machine.arch,
                report.machine.cpus,
                report.machine.wasmtime
            ),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        // Group `g` is centred on x = g, so whole-number ticks label the modules.
        .build_cartesian_2d(-0.5f64..groups as f64 - 0.5, (lo..hi).log_scale())?;
    let module_names: Vec<String> = report.modules.iter().map(|m| m.name.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 2 + 2)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            module_names.get(i as usize).cloned().unwrap_or_default()
        })
        .y_desc("median, ms (log scale)")
        .y_label_formatter(&|v| crate::commands::bench::format_ms(*v))
        .draw()?;

    let bars = names.len().max(1) as f64;
    let bar_width = 0.8 / bars;
    for (g, module) in report.modules.iter().enumerate() {
        for (b, m) in module.measurements.iter().enumerate() {
            if !(m.median_ms.is_finite() && m.median_ms > 0.0) {
                continue;
            }
            let x0 = g as f64 - 0.4 + b as f64 * bar_width;
            let color = COLORS[b % COLORS.len()];
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, lo), (x0 + bar_width * 0.9, m.median_ms)],
                color.filled(),
            )))?;
        }
    }

    draw_legend(&legend, &names)?;
    root.present()?;
    Ok(())
}

/// The whole decades around the report's medians, for the log scale.
fn decades(report: &Report) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let values = report
        .modules
        .iter()
        .flat_map(|m| m.measurements.iter().map(|x| x.median_ms))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return Err("nothing to chart".into());
    }
    Ok((
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()),
    ))
}

/// One coloured box and name per measurement.
fn draw_legend<DB: DrawingBackend>(
    legend: &DrawingArea<DB, plotters::coord::Shift>,
    names: &[&str],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    for (b, name) in names.iter().enumerate() {
        let y = 40 + b as i32 * 22;
        let color = COLORS[b % COLORS.len()];
        legend.draw(&Rectangle::new([(10, y), (24, y + 14)], color.filled()))?;
        legend.draw(&Text::new(
            (*name).to_owned(),
            (32, y),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    Ok(())
}
