//! Two real users sharing a cache directory: a victim and a co-tenant in one group, each running
//! the real `warmcache` binary as its own uid (the test runs as root and drops privileges in
//! the child). Where that is impossible (not root), [`Users::new`] says why and the test skips.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The victim's uid; the co-tenant's is one more. Both in [`GROUP`], neither with a passwd
/// entry: the kernel needs none.
pub const VICTIM: u32 = 64_101;
pub const COTENANT: u32 = 64_102;
pub const GROUP: u32 = 64_100;

pub struct Users {
    /// World-traversable base: the binary, the inputs, each user's home, the shared directory.
    pub base: tempfile::TempDir,
    bin: PathBuf,
}

impl Users {
    /// `None` (with the reason printed) where this process cannot run children as other users.
    pub fn new() -> Option<Self> {
        let base = tempfile::tempdir().unwrap();
        // A file this process creates is owned by its effective uid.
        if std::fs::metadata(base.path()).unwrap().uid() != 0 {
            eprintln!("skipped: multi-user trust tests need root to run children as other uids");
            return None;
        }
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The built binary lives under the target directory, which other users may not reach.
        let bin = base.path().join("warmcache");
        let built = Path::new(env!("CARGO_BIN_EXE_warmcache"));
        if std::fs::hard_link(built, &bin).is_err() {
            std::fs::copy(built, &bin).unwrap();
        }
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        for uid in [VICTIM, COTENANT] {
            let home = base.path().join(format!("home-{uid}"));
            std::fs::create_dir(&home).unwrap();
            std::os::unix::fs::chown(&home, Some(uid), Some(GROUP)).unwrap();
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let users = Self { base, bin };
        let probe = users.command(VICTIM).arg("--version").output();
        match probe {
            Ok(out) if out.status.success() => Some(users),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot run warmcache as uid {VICTIM}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run a child as uid {VICTIM}: {e}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.base.path()
    }

    /// A directory both users can write, as the README's group-writable set-up makes it
    /// (`chmod 2775`, group shared).
    pub fn shared_dir(&self, name: &str) -> PathBuf {
        let dir = self.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(VICTIM), Some(GROUP)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2775)).unwrap();
        dir
    }

    /// A file everyone can read.
    pub fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path
    }

    pub fn home(&self, uid: u32) -> PathBuf {
        self.path().join(format!("home-{uid}"))
    }

    /// `warmcache` as `uid` (group [`GROUP`], no supplementary groups, umask 002), with its own
    /// home and no inherited `WARMCACHE_*` variables.
    pub fn command(&self, uid: u32) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "umask 002; exec \"$0\" \"$@\""])
            .arg(&self.bin);
        for (key, _) in std::env::vars() {
            if key.starts_with("WARMCACHE_") || key.starts_with("AWS_") {
                cmd.env_remove(key);
            }
        }
        let home = self.home(uid);
        cmd.env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env_remove("RUST_LOG")
            .current_dir(self.path())
            .uid(uid)
            .gid(GROUP);
        cmd
    }

    pub fn run(&self, uid: u32, cache_dir: &Path, args: &[&str]) -> Output {
        self.command(uid)
            .env("WARMCACHE_CACHE_DIR", cache_dir)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a shell command as `uid` (umask 002): what a co-tenant does by hand.
    pub fn shell(&self, uid: u32, script: &str) -> Output {
        Command::new("/bin/sh")
            .args(["-c", &format!("umask 002; {script}")])
            .current_dir(self.path())
            .uid(uid)
            .gid(GROUP)
            .output()
            .unwrap()
    }
}

/// The entry files under a file tier's root (`<root>/entries/<2 hex>/<64 hex>`) and in its
/// key namespaces (`<root>/keys/<key id>/entries/...`).
pub fn entry_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for namespace in std::fs::read_dir(root.join("keys"))
        .into_iter()
        .flatten()
        .flatten()
    {
        out.extend(entry_files(&namespace.path()));
    }
    let Ok(fans) = std::fs::read_dir(root.join("entries")) else {
        out.sort();
        return out;
    };
    for fan in fans.flatten() {
        for file in std::fs::read_dir(fan.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(file.path());
            }
        }
    }
    out.sort();
    out
}

pub fn owner(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().uid()
}
