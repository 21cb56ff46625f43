# CPU-bound workloads shared by the run-time benchmarks (sourced, not run).

# write_kernel FILE: a kernel whose code depends on the CPU level and the compiler: scalar popcnt
# and lzcnt (instructions from x86-64 v2 and v3, bit tricks in v1), and SIMD multiplies and
# rounding (SSE4.1 from v2, longer sequences in v1), 200 million iterations.
write_kernel() {
    cat >"$1" <<'EOF'
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32) (local $acc i64) (local $v v128) (local $w v128)
    (local.set $v (v128.const f32x4 1.5 2.25 3.125 4.0625))
    (local.set $w (v128.const i32x4 3 5 7 11))
    (loop $l
      (local.set $acc (i64.add (local.get $acc)
        (i64.add (i64.popcnt (i64.mul (i64.extend_i32_u (local.get $i)) (i64.const 0x9E3779B97F4A7C15)))
                 (i64.extend_i32_u (i32.clz (i32.or (local.get $i) (i32.const 1)))))))
      (local.set $v (f32x4.floor (f32x4.add (local.get $v) (v128.const f32x4 0.75 0.5 0.25 0.125))))
      (local.set $w (i32x4.mul (local.get $w) (v128.const i32x4 1664525 22695477 1103515245 134775813)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 200000000))))
    (call $exit (i32.and (i32.const 0)
      (i32.xor (i32.wrap_i64 (local.get $acc))
        (i32.xor (i32x4.extract_lane 0 (local.get $w)) (i32.trunc_f32_s (f32x4.extract_lane 0 (local.get $v))))))))
)
EOF
}

# write_busy_svg FILE: an SVG that keeps a renderer busy: overlapping translucent gradients and
# blurs.
write_busy_svg() {
    {
        echo '<svg xmlns="http://www.w3.org/2000/svg" width="1600" height="1600">'
        echo '<defs><radialGradient id="g"><stop offset="0" stop-color="#f80"/><stop offset="1" stop-color="#08f" stop-opacity="0.3"/></radialGradient>'
        echo '<filter id="b"><feGaussianBlur stdDeviation="6"/></filter></defs>'
        for i in $(seq 0 59); do
            echo "<circle cx=\"$(((i * 37) % 1600))\" cy=\"$(((i * 91) % 1600))\" r=\"$((40 + i % 120))\" fill=\"url(#g)\" filter=\"url(#b)\"/>"
        done
        echo '</svg>'
    } >"$1"
}
