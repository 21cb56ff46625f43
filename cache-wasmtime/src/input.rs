//! [`Wasm`]: what a cache call compiles on a miss, however the caller holds it.
//!
//! Every entry point of [`WasmCache`](crate::WasmCache) and
//! [`InstanceCache`](crate::InstanceCache) takes one, so the ways of holding wasm (bytes, a hash
//! with a loader, a file with a memo, and a preparation step) are written here once instead of
//! once per entry point.

use std::borrow::Cow;
use std::future::Future;
use std::hash::Hash;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use warmcache_core::{BoxError, CacheKey, CanonicalHasher, ComputeError, Failure};

use crate::error::{Error, Result};
use crate::key::ContentHash;
use crate::memo::{Input, InputMemo};

/// The wasm (binary or text) a cache call compiles on a miss.
///
/// * **Bytes**: a reference to anything that is `AsRef<[u8]>` (`&[u8]`, `&[u8; N]`, `&Vec<u8>`,
///   `&str` for the text format) converts into it; bytes are hashed on every call.
/// * **A hash with a loader** ([`Wasm::hashed`], [`Wasm::hashed_async`]), for code stored by
///   hash: a hit costs no hashing, and the loader runs only on a miss. The bytes it returns are
///   hashed and must match ([`Error::HashMismatch`] otherwise), so a wrong hash cannot store code
///   under another module's key.
/// * **A file** ([`Wasm::file`]): with an [`InputMemo`], a file whose identity is unchanged since
///   its hash was remembered is neither read nor hashed on a hit. A remembered hash that turns
///   out wrong on a miss is forgotten, and the file is hashed afresh.
/// * **Prepared** ([`Wasm::prepared`]), for embedders that transform the wasm before compiling
///   it (for example patching in a heap-pages setting).
///
/// # Example
///
/// ```
/// use warmcache_wasmtime::{ContentHash, ModuleCache, Wasm};
///
/// let engine = wasmtime::Engine::default();
/// let cache = ModuleCache::builder().build();
/// let wasm = br#"(module (func (export "run")))"#.to_vec();
///
/// cache.get_or_compile(&engine, &wasm)?; // bytes: compiled
/// let hash = ContentHash::of(&wasm); // e.g. stored next to the code, computed once
/// cache.get_or_compile(&engine, Wasm::hashed(hash, || -> Result<Vec<u8>, std::io::Error> {
///     unreachable!("a hit does not load")
/// }))?;
/// assert_eq!(cache.stats().computes, 1);
/// # Ok::<(), warmcache_wasmtime::Error>(())
/// ```
pub struct Wasm<'a> {
    source: Source<'a>,
    prepare: Option<Prepare<'a>>,
}

enum Source<'a> {
    Bytes(&'a [u8]),
    Hashed(ContentHash, Loader<'a>),
    File(&'a Path, Option<&'a InputMemo>),
}

type PrepareFn<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, BoxError> + Send + Sync + 'a;

type Loader<'a> = Box<dyn FnOnce() -> BoxFuture<'a, Result<Vec<u8>, BoxError>> + Send + 'a>;

/// A preparation step and the digest of the extras that enter the key.
#[derive(Clone)]
struct Prepare<'a> {
    extras: [u8; 32],
    run: Arc<PrepareFn<'a>>,
}

impl<'a> Wasm<'a> {
    /// Wasm held as bytes (what `From<&[u8]>` gives).
    pub fn bytes(wasm: &'a [u8]) -> Self {
        Self::from_source(Source::Bytes(wasm))
    }

    /// Wasm known by its content hash: `load` runs only on a miss, and its bytes must hash to
    /// `content`.
    pub fn hashed<B, E>(
        content: ContentHash,
        load: impl FnOnce() -> Result<B, E> + Send + 'a,
    ) -> Self
    where
        B: AsRef<[u8]>,
        E: Into<BoxError>,
    {
        let loader: Loader<'a> = Box::new(move || {
            let loaded = load().map(|b| b.as_ref().to_vec()).map_err(Into::into);
            Box::pin(std::future::ready(loaded))
        });
        Self::from_source(Source::Hashed(content, loader))
    }

    /// [`Wasm::hashed`] with an async `load`. The synchronous entry points wait for it on the
    /// calling thread, so there it must not need a runtime's reactor.
    pub fn hashed_async<B, E, F>(content: ContentHash, load: impl FnOnce() -> F + Send + 'a) -> Self
    where
        B: AsRef<[u8]>,
        E: Into<BoxError>,
        F: Future<Output = Result<B, E>> + Send + 'a,
    {
        let loader: Loader<'a> = Box::new(move || {
            Box::pin(async move {
                load()
                    .await
                    .map(|b| b.as_ref().to_vec())
                    .map_err(Into::into)
            })
        });
        Self::from_source(Source::Hashed(content, loader))
    }

    /// The wasm file at `path`, its hash remembered in `memo` when given (see [`InputMemo`]).
    /// Without a memo it is read and hashed on every call. A file that cannot be read is
    /// [`Error::Input`].
    pub fn file(path: &'a Path, memo: Option<&'a InputMemo>) -> Self {
        Self::from_source(Source::File(path, memo))
    }

    /// Compiles `prepare(wasm, extras)` instead of the wasm itself, with `extras` part of the
    /// key. `prepare` is a function pointer, so it cannot capture state that the key does not
    /// cover. Its failure is shared with concurrent callers of the same key, like a compile's.
    ///
    /// # Example
    ///
    /// ```
    /// use warmcache_wasmtime::{ModuleCache, Wasm};
    ///
    /// fn with_pages(wasm: &[u8], pages: &u32) -> Result<Vec<u8>, std::str::Utf8Error> {
    ///     let text = std::str::from_utf8(wasm)?;
    ///     Ok(text.replace("(memory 1)", &format!("(memory {pages})")).into_bytes())
    /// }
    ///
    /// let engine = wasmtime::Engine::default();
    /// let cache = ModuleCache::builder().build();
    /// let wasm = br#"(module (memory 1) (export "memory" (memory 0)))"#;
    /// cache.get_or_compile(&engine, Wasm::from(wasm).prepared(&16u32, with_pages))?;
    /// cache.get_or_compile(&engine, Wasm::from(wasm).prepared(&32u32, with_pages))?; // another key
    /// assert_eq!(cache.stats().computes, 2);
    /// # Ok::<(), warmcache_wasmtime::Error>(())
    /// ```
    pub fn prepared<X, E>(
        mut self,
        extras: &'a X,
        prepare: fn(&[u8], &X) -> Result<Vec<u8>, E>,
    ) -> Self
    where
        X: Hash + Sync + ?Sized,
        E: Into<BoxError> + 'a,
    {
        let mut hasher = CanonicalHasher::new();
        extras.hash(&mut hasher);
        self.prepare = Some(Prepare {
            extras: *hasher.digest().as_bytes(),
            run: Arc::new(move |wasm| prepare(wasm, extras).map_err(Into::into)),
        });
        self
    }

    fn from_source(source: Source<'a>) -> Self {
        Self {
            source,
            prepare: None,
        }
    }

    /// Learns the content hash: hashes bytes, or asks the memo, or reads and hashes the file.
    pub(crate) fn open(self) -> Result<Opened<'a>> {
        let (content, held, retry) = match self.source {
            Source::Bytes(wasm) => (ContentHash::of(wasm), Held::Bytes(wasm), None),
            Source::Hashed(content, load) => (content, Held::Loader(load), None),
            Source::File(path, memo) => {
                let input = match memo {
                    Some(memo) => memo.input(path),
                    None => Input::open(path),
                }
                .map_err(|e| read_error(path, e))?;
                let retry = memo.filter(|_| input.was_remembered()).map(|memo| Retry {
                    path,
                    memo,
                    prepare: self.prepare.clone(),
                });
                (input.hash(), Held::File(input), retry)
            }
        };
        Ok(Opened {
            content,
            held,
            prepare: self.prepare,
            retry,
        })
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> From<&'a T> for Wasm<'a> {
    fn from(wasm: &'a T) -> Self {
        Self::bytes(wasm.as_ref())
    }
}

impl std::fmt::Debug for Wasm<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Wasm");
        match &self.source {
            Source::Bytes(wasm) => out.field("bytes", &wasm.len()),
            Source::Hashed(content, _) => out.field("hashed", content),
            Source::File(path, memo) => out.field("file", path).field("memo", &memo.is_some()),
        };
        out.field("prepared", &self.prepare.is_some()).finish()
    }
}

/// A [`Wasm`] whose content hash is known.
pub(crate) struct Opened<'a> {
    pub(crate) content: ContentHash,
    held: Held<'a>,
    prepare: Option<Prepare<'a>>,
    retry: Option<Retry<'a>>,
}

enum Held<'a> {
    Bytes(&'a [u8]),
    Loader(Loader<'a>),
    File(Input),
}

/// A file whose hash came from the memo, to be hashed afresh if that hash proves wrong.
struct Retry<'a> {
    path: &'a Path,
    memo: &'a InputMemo,
    prepare: Option<Prepare<'a>>,
}

impl<'a> Opened<'a> {
    /// What enters the key besides the content hash.
    pub(crate) fn extras(&self) -> &[u8] {
        self.prepare.as_ref().map_or(&[], |p| &p.extras[..])
    }

    /// Runs `obtain` on this input. When the hash came from the memo and the bytes read prove
    /// it wrong, the record is forgotten and `obtain` runs again on the file hashed afresh.
    pub(crate) async fn run<X, F>(mut self, mut obtain: impl FnMut(Self) -> F) -> Result<X>
    where
        F: Future<Output = Result<X>>,
    {
        let retry = self.retry.take();
        match obtain(self).await {
            Err(Error::HashMismatch { .. }) if let Some(retry) = retry => {
                obtain(retry.open()?).await
            }
            other => other,
        }
    }

    /// The bytes to compile, checked against the content hash and prepared. A failure to
    /// supply them is the caller's input; a failed preparation is shared under `key`.
    pub(crate) async fn bytes(self, key: CacheKey) -> Result<Cow<'a, [u8]>, Failure<Error>> {
        let content = self.content;
        let wasm = match self.held {
            Held::Bytes(wasm) => Cow::Borrowed(wasm),
            Held::Loader(load) => {
                let bytes = load()
                    .await
                    .map_err(|e| Failure::Input(source_error(content, e)))?;
                Cow::Owned(checked(content, bytes)?)
            }
            Held::File(input) => {
                let remembered = input.was_remembered();
                let path = input.path().to_path_buf();
                let bytes = input
                    .into_bytes()
                    .map_err(|e| Failure::Input(read_error(&path, e)))?;
                match remembered {
                    true => Cow::Owned(checked(content, bytes)?),
                    false => Cow::Owned(bytes),
                }
            }
        };
        match self.prepare {
            None => Ok(wasm),
            Some(prepare) => (prepare.run)(&wasm)
                .map(Cow::Owned)
                .map_err(|e| Failure::Compute(ComputeError::failed(key, source_error(content, e)))),
        }
    }
}

impl<'a> Retry<'a> {
    /// Forgets the wrong record and opens the file afresh, hashing it.
    fn open(self) -> Result<Opened<'a>> {
        tracing::warn!(path = %self.path.display(), "a remembered input hash was wrong; hashing the file again");
        if let Ok(file) = std::fs::File::open(self.path) {
            self.memo.forget_file(&file);
        }
        let mut wasm = Wasm::file(self.path, None);
        wasm.prepare = self.prepare;
        wasm.open()
    }
}

fn checked(content: ContentHash, bytes: Vec<u8>) -> Result<Vec<u8>, Failure<Error>> {
    let found = ContentHash::of(&bytes);
    match found == content {
        true => Ok(bytes),
        false => Err(Failure::Input(Error::HashMismatch {
            expected: content,
            found,
        })),
    }
}

fn source_error(content: ContentHash, e: BoxError) -> Error {
    Error::Source {
        content,
        source: Arc::from(e),
    }
}

fn read_error(path: &Path, source: std::io::Error) -> Error {
    Error::Input {
        path: path.to_path_buf(),
        source: Arc::new(source),
    }
}
