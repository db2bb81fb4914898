//! A harness for end-to-end tests: throwaway Postgres clusters with DriftDB, run as the
//! `postgres` system user when the tests run as root (Postgres refuses root), reached over
//! TCP on loopback with a real client library.
//!
//! `DRIFTDB_PG_BINDIR` names the Postgres binaries to use (the version under test); the
//! extension must already be installed into that Postgres (`make test` does it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use postgres::{Client, NoTls};

/// Where cluster data directories are made. `make test` passes a directory the postgres
/// user owns; otherwise a directory under the system temp dir is used.
fn run_root() -> PathBuf {
    std::env::var_os("DRIFTDB_RUN")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("driftdb-e2e"))
}

pub fn bindir() -> PathBuf {
    PathBuf::from(std::env::var_os("DRIFTDB_PG_BINDIR").expect(
        "DRIFTDB_PG_BINDIR must name the bin directory of the Postgres under test (make test sets it)",
    ))
}

fn running_as_root() -> bool {
    // SAFETY-free check: `id -u` avoids a libc dependency for one call.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a Postgres program, as the postgres user when we are root.
fn pg_command(program: &str, args: &[&str]) -> Output {
    let path = bindir().join(program);
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&path);
        c
    } else {
        Command::new(&path)
    };
    // A developer's RUST_BACKTRACE would add Rust backtraces to the server's errors.
    cmd.args(args).current_dir("/").env_remove("RUST_BACKTRACE");
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cluster that exists for one test and is removed when dropped.
pub struct Cluster {
    pub datadir: PathBuf,
    pub port: u16,
}

impl Cluster {
    /// Creates and starts a cluster named `name` with DriftDB preloaded and the given extra
    /// postgresql.conf lines.
    pub fn start(name: &str, extra_conf: &[&str]) -> Cluster {
        Self::start_with(name, true, extra_conf)
    }

    /// Like [`Cluster::start`], choosing whether DriftDB is in shared_preload_libraries.
    pub fn start_with(name: &str, preload: bool, extra_conf: &[&str]) -> Cluster {
        let root = run_root();
        let datadir = root.join(format!("e2e-{name}-{}", std::process::id()));
        prepare_dir(&datadir);
        let d = datadir.to_str().unwrap();
        let out = pg_command(
            "initdb",
            &[
                "-D",
                d,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{d}'\n\
             fsync = on\nlogging_collector = off\n"
        );
        if preload {
            conf.push_str("shared_preload_libraries = 'driftdb'\n");
        }
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        append(&datadir.join("postgresql.conf"), &conf);
        let c = Cluster { datadir, port };
        c.pg_ctl_start();
        c
    }

    fn pg_ctl_start(&self) {
        let d = self.datadir.to_str().unwrap();
        let log = format!("{d}/server.log");
        let out = pg_command("pg_ctl", &["-D", d, "-l", &log, "-w", "-t", "60", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Connects over TCP to `db` as the superuser `postgres`.
    pub fn connect(&self, db: &str) -> Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Client::connect(
                &format!(
                    "host=127.0.0.1 port={} user=postgres dbname={db}",
                    self.port
                ),
                NoTls,
            ) {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot connect to port {}: {e}", self.port),
            }
        }
    }

    /// Creates database `db` with DriftDB in it and returns a connection to it.
    pub fn create_db(&self, db: &str) -> Client {
        self.connect("postgres")
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        let mut c = self.connect(db);
        c.batch_execute("CREATE EXTENSION driftdb").unwrap();
        c
    }

    pub fn stop(&self) {
        let d = self.datadir.to_str().unwrap();
        let _ = pg_command("pg_ctl", &["-D", d, "-m", "fast", "-w", "stop"]);
    }

    /// Kills the postmaster and every server process with SIGKILL, as a power cut would
    /// leave them: nothing gets to flush or clean up.
    pub fn crash(&self) {
        let pidfile = std::fs::read_to_string(self.datadir.join("postmaster.pid")).unwrap();
        let pid = pidfile.lines().next().unwrap().trim().to_string();
        let signal = |sig: &str, p: &str| {
            Command::new("kill")
                .args([sig, p])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap()
                .success()
        };
        // Stopped first, the postmaster starts no process while its children are listed
        // and killed; a child may still exit on its own meanwhile (that kill then fails).
        assert!(signal("-STOP", &pid), "kill -STOP {pid}");
        let children = Command::new("pgrep").args(["-P", &pid]).output().unwrap();
        let mut pids: Vec<String> = String::from_utf8_lossy(&children.stdout)
            .split_whitespace()
            .map(String::from)
            .collect();
        for p in &pids {
            signal("-9", p);
        }
        assert!(signal("-9", &pid), "kill -9 {pid}");
        pids.push(pid);
        // Wait until every one of them is gone, so the restart finds no survivors.
        let deadline = Instant::now() + Duration::from_secs(30);
        while pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
        {
            assert!(
                Instant::now() < deadline,
                "server processes survived kill -9"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again after [`Cluster::stop`] or [`Cluster::crash`].
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// Takes a base backup of this cluster into `dir` (streaming the WAL it needs).
    pub fn base_backup(&self, dir: &Path, standby: bool) {
        prepare_dir(dir);
        let port = self.port.to_string();
        let mut args = vec![
            "-D",
            dir.to_str().unwrap(),
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        ];
        if standby {
            // standby.signal and primary_conninfo.
            args.push("-R");
        }
        let out = pg_command("pg_basebackup", &args);
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A hot standby of this cluster, streaming from it, started and caught up.
    pub fn standby(&self, name: &str) -> Cluster {
        let datadir = run_root().join(format!("e2e-{name}-{}", std::process::id()));
        self.base_backup(&datadir, true);
        let c = Cluster::from_data(datadir, &["hot_standby = on"]);
        self.wait_replayed(&c);
        c
    }

    /// Starts a cluster on a data directory made by [`Cluster::base_backup`] (or a copy of
    /// one), on a port of its own, with extra configuration lines.
    pub fn from_data(datadir: PathBuf, extra_conf: &[&str]) -> Cluster {
        let port = free_port();
        let d = datadir.to_str().unwrap().to_string();
        let mut conf = format!("\nport = {port}\nunix_socket_directories = '{d}'\n");
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        append(&datadir.join("postgresql.conf"), &conf);
        let c = Cluster { datadir, port };
        c.pg_ctl_start();
        c
    }

    /// Waits until `standby` has replayed everything this cluster has written so far.
    pub fn wait_replayed(&self, standby: &Cluster) {
        let lsn: String = self
            .connect("postgres")
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .unwrap()
            .get(0);
        let mut s = standby.connect("postgres");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let caught_up: bool = s
                .query_one(
                    "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                    &[&lsn],
                )
                .unwrap()
                .get(0);
            if caught_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "standby did not replay up to {lsn}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Promotes a standby to a primary and waits until it accepts writes.
    pub fn promote(&self) {
        let d = self.datadir.to_str().unwrap();
        let out = pg_command("pg_ctl", &["-D", d, "-w", "-t", "60", "promote"]);
        assert!(
            out.status.success(),
            "pg_ctl promote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.datadir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let d = self.datadir.to_str().unwrap();
        let _ = pg_command("pg_ctl", &["-D", d, "-m", "immediate", "-w", "stop"]);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.datadir);
        }
    }
}

/// A fresh empty directory the postgres user owns.
pub fn prepare_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    if running_as_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown of {}", dir.display());
    }
    // Postgres refuses a data directory others can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A scratch directory under the run root, removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> ScratchDir {
        let dir = run_root().join(format!("e2e-{name}-{}", std::process::id()));
        prepare_dir(&dir);
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Copies a directory tree (as root or as the owner), keeping the postgres user's
/// ownership and modes.
pub fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// xorshift64*: a small deterministic generator, so a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// One element of `from`, each as likely.
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
}

/// Waits until the backend with pid `pid` waits for a heavyweight lock, as
/// `pg_stat_activity` shows it (observed, not slept for), and returns its wait event
/// (`Lock:relation`, `Lock:transactionid`, ...); panics after 30 seconds.
pub fn lock_wait_of(c: &mut Client, pid: i32) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let what: String = c
            .query_one(
                "SELECT coalesce(wait_event_type, '') || ':' || coalesce(wait_event, '') \
                   FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get(0);
        if what.starts_with("Lock:") {
            return what;
        }
        assert!(
            Instant::now() < deadline,
            "backend {pid} never waited for a lock (last: {what})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tmpfs of a given size mounted at a directory owned by the postgres user, unmounted
/// when dropped: a small file system for disk-full tests (needs root, as `make test` runs).
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Whether this process may mount file systems: root with CAP_SYS_ADMIN (a machine of
    /// this project's kind; an unprivileged container may not). Tried on a scratch
    /// directory; callers that get `false` say loudly that they did not run.
    pub fn can_mount() -> bool {
        let probe = run_root().join(format!("e2e-mount-probe-{}", std::process::id()));
        std::fs::create_dir_all(&probe).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&probe)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            let _ = Command::new("umount").arg(&probe).status();
        }
        let _ = std::fs::remove_dir(&probe);
        ok
    }

    pub fn mount(dir: &Path, megabytes: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let uid = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let gid = Command::new("id")
            .args(["-g", "postgres"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={megabytes}m,mode=0700,uid={uid},gid={gid}"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a {megabytes} MB tmpfs at {} (disk-full tests need root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
