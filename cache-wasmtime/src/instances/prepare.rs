//! What differs between modules and components when preparing and instantiating them.

use std::future::Future;

use wasmtime::component::Component;
use wasmtime::{AsContextMut, Engine, Module};

use crate::artifact::Artifact;

/// An [`Artifact`] that a linker can pre-instantiate: [`Module`] with [`wasmtime::Linker`],
/// [`Component`] with [`wasmtime::component::Linker`]. Sealed, like [`Artifact`].
pub trait Instantiate<T: 'static>: Artifact {
    /// The linker that resolves its imports.
    type Linker: Send + Sync + 'static;
    /// Its pre-instantiation: imports resolved and type-checked, ready to instantiate.
    type Pre: Clone + Send + Sync + 'static;
    /// A live instance.
    type Instance;

    /// The engine `linker` belongs to.
    fn linker_engine(linker: &Self::Linker) -> &Engine;

    /// Resolves the imports of `artifact` in `linker`.
    ///
    /// # Errors
    ///
    /// When an import is missing or has the wrong type.
    fn prepare(linker: &Self::Linker, artifact: &Self) -> wasmtime::Result<Self::Pre>;

    /// The engine `pre` belongs to.
    fn pre_engine(pre: &Self::Pre) -> &Engine;

    /// A new instance of `pre` in `store`.
    ///
    /// # Errors
    ///
    /// When the store belongs to another engine, the pooling allocator has no free slot, or the
    /// start function traps.
    fn instantiate(
        pre: &Self::Pre,
        store: impl AsContextMut<Data = T>,
    ) -> wasmtime::Result<Self::Instance>;

    /// [`instantiate`](Self::instantiate) for stores of an engine with async support.
    ///
    /// # Errors
    ///
    /// As for [`instantiate`](Self::instantiate).
    fn instantiate_async(
        pre: &Self::Pre,
        store: impl AsContextMut<Data = T> + Send,
    ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send
    where
        T: Send;
}

/// The two implementations differ only in their wasmtime types.
macro_rules! instantiate_for {
    ($artifact:ty, $linker:ty, $pre:ty, $instance:ty, $of_pre:ident) => {
        impl<T: 'static> Instantiate<T> for $artifact {
            type Linker = $linker;
            type Pre = $pre;
            type Instance = $instance;

            fn linker_engine(linker: &Self::Linker) -> &Engine {
                linker.engine()
            }

            fn prepare(linker: &Self::Linker, artifact: &Self) -> wasmtime::Result<Self::Pre> {
                linker.instantiate_pre(artifact)
            }

            fn pre_engine(pre: &Self::Pre) -> &Engine {
                pre.$of_pre().engine()
            }

            fn instantiate(
                pre: &Self::Pre,
                store: impl AsContextMut<Data = T>,
            ) -> wasmtime::Result<Self::Instance> {
                pre.instantiate(store)
            }

            fn instantiate_async(
                pre: &Self::Pre,
                store: impl AsContextMut<Data = T> + Send,
            ) -> impl Future<Output = wasmtime::Result<Self::Instance>> + Send
            where
                T: Send,
            {
                pre.instantiate_async(store)
            }
        }
    };
}

instantiate_for!(
    Module,
    wasmtime::Linker<T>,
    wasmtime::InstancePre<T>,
    wasmtime::Instance,
    module
);
instantiate_for!(
    Component,
    wasmtime::component::Linker<T>,
    wasmtime::component::InstancePre<T>,
    wasmtime::component::Instance,
    component
);
