//! What a module or component needs from the pooling allocator, read from its binary.

use wasmparser::{DataKind, Encoding, Operator, Parser, Payload, TypeRef};

/// Room an entity may take in an instance's context, in bytes: more than any wasmtime 48 uses
/// (a function reference is 32 bytes, a function import 24, a global 16).
const BYTES_PER_ENTITY: u64 = 64;
/// Fixed part of an instance (wasmtime's `Instance` and the context header), generously.
const INSTANCE_BASE_BYTES: u64 = 4096;

/// The pooling limits one binary needs; [`Needs::merge`] combines binaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Needs {
    /// Defined memories of the largest core module.
    pub(super) memories_per_module: u32,
    /// Defined tables of the largest core module.
    pub(super) tables_per_module: u32,
    /// Largest initial size of a defined memory, in bytes.
    pub(super) initial_memory: u64,
    /// Largest declared maximum of a defined memory, in bytes (`u64::MAX` when one has none).
    pub(super) maximum_memory: u64,
    /// Largest initial size of a defined table, in elements.
    pub(super) initial_table: u64,
    /// Largest declared maximum of a defined table (`u64::MAX` when one has none).
    pub(super) maximum_table: u64,
    /// Bound on a core instance's size.
    pub(super) core_instance_size: u64,
    /// Bound on a component instance's size (0 for modules).
    pub(super) component_instance_size: u64,
    /// Core instances one top-level instance creates (1 for a module).
    pub(super) core_instances: u32,
    /// Memories one top-level instance creates.
    pub(super) memories: u32,
    /// Tables one top-level instance creates.
    pub(super) tables: u32,
    /// End of the last active data segment with a constant offset: the extent of the initial
    /// memory image.
    pub(super) image_extent: u64,
}

impl Needs {
    /// The larger of each need.
    pub(super) fn merge(&mut self, other: &Needs) {
        self.memories_per_module = self.memories_per_module.max(other.memories_per_module);
        self.tables_per_module = self.tables_per_module.max(other.tables_per_module);
        self.initial_memory = self.initial_memory.max(other.initial_memory);
        self.maximum_memory = self.maximum_memory.max(other.maximum_memory);
        self.initial_table = self.initial_table.max(other.initial_table);
        self.maximum_table = self.maximum_table.max(other.maximum_table);
        self.core_instance_size = self.core_instance_size.max(other.core_instance_size);
        self.component_instance_size = self
            .component_instance_size
            .max(other.component_instance_size);
        self.core_instances = self.core_instances.max(other.core_instances);
        self.memories = self.memories.max(other.memories);
        self.tables = self.tables.max(other.tables);
        self.image_extent = self.image_extent.max(other.image_extent);
    }
}

/// Counts within one core module.
#[derive(Default)]
struct ModuleCounts {
    entities: u64,
    memories: u32,
    tables: u32,
}

/// Counts within one component, including the components nested in it.
#[derive(Default)]
struct ComponentCounts {
    entities: u64,
    core_instances: u32,
}

enum Frame {
    Module(ModuleCounts),
    Component(ComponentCounts),
}

/// What `wasm` (a module or component binary) needs.
pub(super) fn of(wasm: &[u8]) -> Result<Needs, wasmparser::BinaryReaderError> {
    let mut needs = Needs::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut is_component = false;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if let Payload::Version { encoding, .. } = &payload {
            is_component |= stack.is_empty() && *encoding == Encoding::Component;
            stack.push(match encoding {
                Encoding::Module => Frame::Module(ModuleCounts::default()),
                Encoding::Component => Frame::Component(ComponentCounts::default()),
            });
            continue;
        }
        if let Payload::End(_) = payload {
            match stack.pop() {
                Some(Frame::Module(m)) => {
                    needs.memories_per_module = needs.memories_per_module.max(m.memories);
                    needs.tables_per_module = needs.tables_per_module.max(m.tables);
                    needs.core_instance_size = needs
                        .core_instance_size
                        .max(INSTANCE_BASE_BYTES + BYTES_PER_ENTITY * m.entities);
                }
                Some(Frame::Component(c)) => match stack.last_mut() {
                    Some(Frame::Component(parent)) => {
                        parent.entities += c.entities;
                        parent.core_instances += c.core_instances;
                    }
                    _ => {
                        needs.component_instance_size =
                            INSTANCE_BASE_BYTES + BYTES_PER_ENTITY * c.entities;
                        needs.core_instances = c.core_instances;
                    }
                },
                None => {}
            }
            continue;
        }
        match stack.last_mut() {
            Some(Frame::Module(m)) => module_payload(&payload, m, &mut needs)?,
            Some(Frame::Component(c)) => component_payload(&payload, c),
            None => {}
        }
    }
    if is_component {
        // A component may instantiate any of its modules in each core instance.
        needs.memories = needs
            .core_instances
            .saturating_mul(needs.memories_per_module);
        needs.tables = needs.core_instances.saturating_mul(needs.tables_per_module);
    } else {
        needs.core_instances = 1;
        needs.memories = needs.memories_per_module;
        needs.tables = needs.tables_per_module;
    }
    Ok(needs)
}

fn module_payload(
    payload: &Payload<'_>,
    m: &mut ModuleCounts,
    needs: &mut Needs,
) -> Result<(), wasmparser::BinaryReaderError> {
    match payload {
        Payload::ImportSection(imports) => {
            for import in imports.clone().into_imports() {
                let import = import?;
                m.entities += 1;
                if let TypeRef::Func(_) | TypeRef::FuncExact(_) = import.ty {
                    // An imported function may also need a function reference.
                    m.entities += 1;
                }
            }
        }
        Payload::FunctionSection(s) => m.entities += u64::from(s.count()),
        Payload::GlobalSection(s) => m.entities += u64::from(s.count()),
        Payload::TagSection(s) => m.entities += u64::from(s.count()),
        Payload::TableSection(tables) => {
            for table in tables.clone() {
                let ty = table?.ty;
                m.tables += 1;
                m.entities += 1;
                needs.initial_table = needs.initial_table.max(ty.initial);
                needs.maximum_table = needs.maximum_table.max(ty.maximum.unwrap_or(u64::MAX));
            }
        }
        Payload::MemorySection(memories) => {
            for memory in memories.clone() {
                let ty = memory?;
                m.memories += 1;
                m.entities += 1;
                let page = 1u64 << ty.page_size_log2.unwrap_or(16);
                needs.initial_memory = needs.initial_memory.max(ty.initial.saturating_mul(page));
                let maximum = ty.maximum.map_or(u64::MAX, |max| max.saturating_mul(page));
                needs.maximum_memory = needs.maximum_memory.max(maximum);
            }
        }
        Payload::DataSection(data) => {
            for segment in data.clone() {
                let segment = segment?;
                if let DataKind::Active { offset_expr, .. } = segment.kind {
                    let offset = match offset_expr.get_operators_reader().read()? {
                        Operator::I32Const { value } => u64::from(value as u32),
                        Operator::I64Const { value } => value as u64,
                        // Not constant: not part of a memory image.
                        _ => continue,
                    };
                    let end = offset.saturating_add(segment.data.len() as u64);
                    needs.image_extent = needs.image_extent.max(end);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn component_payload(payload: &Payload<'_>, c: &mut ComponentCounts) {
    let count = match payload {
        Payload::InstanceSection(s) => {
            c.core_instances += s.count();
            s.count()
        }
        Payload::CoreTypeSection(s) => s.count(),
        Payload::ComponentInstanceSection(s) => s.count(),
        Payload::ComponentAliasSection(s) => s.count(),
        Payload::ComponentTypeSection(s) => s.count(),
        Payload::ComponentCanonicalSection(s) => s.count(),
        Payload::ComponentImportSection(s) => s.count(),
        Payload::ComponentExportSection(s) => s.count(),
        _ => 0,
    };
    c.entities += u64::from(count);
}
