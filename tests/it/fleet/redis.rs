//! A real `redis-server` for the fleet stories: on a free loopback port, with a
//! configuration the test writes (no persistence, so a restart comes back empty).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::free_port;

pub struct Redis {
    pub port: u16,
    /// Serving TLS only (`rediss://`).
    tls: bool,
    conf: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Start one; `password`: its `requirepass`.
    pub async fn start(password: Option<&str>) -> Self {
        Self::start_with(password, None).await
    }

    /// Start one serving TLS only, with this certificate and key (PEM).
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::start_with(None, Some((cert_pem, key_pem))).await
    }

    async fn start_with(password: Option<&str>, tls: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\nsave \"\"\nappendonly no\ndir {}\nlogfile \"\"\n",
            dir.path().display()
        );
        if let Some(p) = password {
            conf.push_str(&format!("requirepass {p}\n"));
        }
        if let Some((cert, key)) = tls {
            let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&c, cert).expect("write cert");
            std::fs::write(&k, key).expect("write key");
            conf = conf.replace(&format!("port {port}\n"), "port 0\n");
            conf.push_str(&format!(
                "tls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-auth-clients no\n",
                c.display(),
                k.display()
            ));
        }
        let path = dir.path().join("redis.conf");
        std::fs::write(&path, conf).expect("write redis.conf");
        let mut r = Self {
            port,
            tls: tls.is_some(),
            conf: path,
            child: None,
            _dir: dir,
        };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian's redis-server package; .ci/run installs it)");
        let pid = child.id();
        self.child = Some(child);
        // Ours, not another test's that had the port a moment ago: INFO names the process.
        for _ in 0..500 {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server exited ({status}): port {} taken?", self.port);
            }
            let connected = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await;
            if self.tls && connected.is_ok() {
                return; // it is ours if it has not exited (checked above)
            }
            if let Ok(mut c) = connected {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut info = vec![0; 4096];
                let _ = c.write_all(b"INFO server\r\n").await;
                let n = tokio::time::timeout(Duration::from_secs(1), c.read(&mut info))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let info = String::from_utf8_lossy(&info[..n]);
                // Before AUTH a password-protected server answers NOAUTH: it is up, and the
                // exit check above says whether it is ours.
                if info.contains(&format!("process_id:{pid}\r")) || info.contains("NOAUTH") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server does not answer on {}", self.port);
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis runs").id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} redis");
    }

    /// SIGKILL: the store is gone, and every entry with it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// SIGSTOP: connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// The keys matching `pattern`, as the sidecars wrote them.
    pub async fn keys(&self, password: Option<&str>, pattern: &str) -> Vec<String> {
        let mut conn = self.conn(password).await;
        ::redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .expect("KEYS")
    }

    /// A direct connection, to look at what the sidecars wrote.
    pub async fn conn(&self, password: Option<&str>) -> redis::aio::MultiplexedConnection {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => self.url(),
        };
        redis::Client::open(url)
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connects to redis")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused server ignores SIGKILL only until it is continued.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(c.id().to_string())
                .status();
        }
        self.kill();
    }
}
