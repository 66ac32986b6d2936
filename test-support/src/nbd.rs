//! Real NBD servers for the tests: `nbdkit` with its `file` plugin (serving the files of a
//! directory, one export per file name, so a wrong export name is refused), optionally
//! behind filters (`error`), and `qemu-nbd`, on a Unix socket or on 127.0.0.1. A server is
//! killed when its handle drops. A server that cannot start fails the test with its output:
//! nothing is skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server gets to accept connections.
const START_WAIT: Duration = Duration::from_secs(15);

/// Where the server listens.
#[derive(Debug, Clone)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(u16),
}

pub struct NbdServer {
    child: Option<Child>,
    cmd: Vec<String>,
    pub listen: Listen,
    log: PathBuf,
}

impl NbdServer {
    /// `nbdkit` serving the files of `dir` (export name = file name), with `filters` (e.g.
    /// `["error"]`) and their `params` (e.g. `["error-rate=1", "error-file=/x"]`).
    pub fn nbdkit(dir: &Path, listen: Listen, filters: &[&str], params: &[&str]) -> NbdServer {
        let mut cmd: Vec<String> = vec!["nbdkit".into(), "--foreground".into(), "--exit-with-parent".into()];
        match &listen {
            Listen::Unix(sock) => cmd.extend(["--unix".into(), sock.display().to_string()]),
            Listen::Tcp(port) => cmd.extend(["--ipaddr".into(), "127.0.0.1".into(), "--port".into(), port.to_string()]),
        }
        cmd.extend(filters.iter().map(|f| format!("--filter={f}")));
        cmd.extend(["file".into(), format!("dir={}", dir.display())]);
        cmd.extend(params.iter().map(|p| p.to_string()));
        NbdServer::start(cmd, listen, dir.join("nbdkit.log"))
    }

    /// `qemu-nbd` serving `image` (raw) as export `name`.
    pub fn qemu_nbd(image: &Path, name: &str, listen: Listen) -> NbdServer {
        let mut cmd: Vec<String> = vec![
            "qemu-nbd".into(),
            "--persistent".into(),
            "--shared=8".into(),
            "--format=raw".into(),
            format!("--export-name={name}"),
        ];
        match &listen {
            Listen::Unix(sock) => cmd.push(format!("--socket={}", sock.display())),
            Listen::Tcp(port) => cmd.extend(["--bind=127.0.0.1".into(), format!("--port={port}")]),
        }
        cmd.push(image.display().to_string());
        let log = image.with_extension("qemu-nbd.log");
        NbdServer::start(cmd, listen, log)
    }

    fn start(cmd: Vec<String>, listen: Listen, log: PathBuf) -> NbdServer {
        let mut s = NbdServer { child: None, cmd, listen, log };
        s.restart();
        s
    }

    /// The URI of export `name` on this server.
    pub fn uri(&self, name: &str) -> String {
        match &self.listen {
            Listen::Unix(sock) => format!("nbd+unix:///{name}?socket={}", sock.display()),
            Listen::Tcp(port) => format!("nbd://127.0.0.1:{port}/{name}"),
        }
    }

    /// Kills the server at once (SIGKILL), as a crash or a pulled cable would end it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Listen::Unix(sock) = &self.listen {
            let _ = std::fs::remove_file(sock);
        }
    }

    /// Starts the server again with the same command, and waits until it accepts.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::File::create(&self.log).expect("server log");
        let child = Command::new(&self.cmd[0])
            .args(&self.cmd[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("server log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}): install it (apt-get install -y nbdkit qemu-utils)", self.cmd[0])
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        loop {
            let up = match &self.listen {
                Listen::Unix(sock) => std::os::unix::net::UnixStream::connect(sock).is_ok(),
                Listen::Tcp(port) => std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok(),
            };
            if up {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("{:?} exited ({status}) before accepting: {}", self.cmd, self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not accept within {START_WAIT:?}: {}",
                self.cmd,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port on 127.0.0.1 that nobody listens on now (the kernel's pick, released at once:
/// another process could take it before the server does, which the server's start names).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}
