//! The gateway binary as its own process: `phigate run` with its JSON log read line by line,
//! and SIGTERM to stop it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A child's output, line by line, read on a thread so its writes never block on a full pipe.
pub struct Lines(tokio::sync::mpsc::UnboundedReceiver<String>);

impl Lines {
    pub fn of(pipe: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self(rx)
    }

    /// The next line, within 30 s; `None` once the pipe is closed.
    pub async fn next(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(30), self.0.recv())
            .await
            .expect("a line within 30 s")
    }

    /// Every line until the pipe closes (the child has exited).
    pub async fn rest(mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.next().await {
            lines.push(line);
        }
        lines
    }
}

/// The JSON log of a `phigate run`, remembered so a line can be asked for after it went by.
pub struct Log {
    lines: Lines,
    /// Every line read so far (a line that is not JSON reads as `null`).
    pub seen: Vec<Value>,
}

impl Log {
    /// The first line ever logged that is `wanted`, waiting for it.
    pub async fn find(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.seen.iter().find(|v| wanted(v)) {
            return found.clone();
        }
        loop {
            let line = self
                .lines
                .next()
                .await
                .expect("the gateway is still logging");
            let value: Value = serde_json::from_str(&line).unwrap_or_default();
            self.seen.push(value.clone());
            if wanted(&value) {
                return value;
            }
        }
    }

    /// The first line ever logged whose message starts with `message`, waiting for it.
    pub async fn line(&mut self, message: &str) -> Value {
        self.find(|value| {
            value["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .await
    }

    /// Every line the process logged, once it has exited.
    pub async fn all(self) -> Vec<Value> {
        let Self { lines, mut seen } = self;
        for line in lines.rest().await {
            seen.push(serde_json::from_str(&line).unwrap_or_default());
        }
        seen
    }
}

/// Starts `phigate run --config FILE` at `info`; returns it with its log and its TLS address.
pub async fn run_binary(config: &Path) -> (Child, Log, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_phigate"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut log = Log {
        lines: Lines::of(child.stderr.take().unwrap()),
        seen: Vec::new(),
    };
    let serving = log.line("phigate serving").await;
    let addr = serving["listen.address"].as_str().unwrap().parse().unwrap();
    (child, log, addr)
}

/// Sends SIGTERM to `child`, which must still be running.
pub fn signal_term(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "SIGTERM not delivered");
}

/// Stops `child` with SIGTERM and waits for it to exit.
pub async fn terminate(mut child: Child) -> ExitStatus {
    signal_term(&child);
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
}
