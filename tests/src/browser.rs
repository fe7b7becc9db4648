//! A real browser for the chat widget's tests: Debian's Chromium, headless, driven over
//! WebDriver (ChromeDriver, `fantoccini`). Each [`ChromeDriver::session`] is a browser of its
//! own with a fresh profile (ChromeDriver makes a temporary user data directory per session).

use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use crate::free_port;

/// A ChromeDriver process, stopped on drop.
pub struct ChromeDriver {
    process: Child,
    url: String,
    /// Holds the Chromium ChromeDriver starts: [`reaped_chromium`].
    chromium: (tempfile::TempDir, std::path::PathBuf),
}

/// A script that runs Debian's Chromium so that it dies with its parent, ChromeDriver (with
/// ChromeDriver killed, a browser would run on, orphaned; its own children follow it). It lives
/// beside the test binary, where files may be run (a `/tmp` mounted `noexec` would refuse it).
fn reaped_chromium() -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf)> {
    use std::os::unix::fs::PermissionsExt as _;
    let binary = std::env::current_exe()?;
    let beside = binary.parent().context("the test binary has no directory")?;
    let dir = tempfile::Builder::new().prefix("chromium-").tempdir_in(beside)?;
    let path = dir.path().join("chromium");
    let script = match crate::which("setpriv") {
        Some(setpriv) => format!(
            "#!/bin/sh\nexec {} --pdeathsig KILL -- /usr/bin/chromium \"$@\"\n",
            setpriv.display()
        ),
        None => "#!/bin/sh\nexec /usr/bin/chromium \"$@\"\n".to_owned(),
    };
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok((dir, path))
}

impl ChromeDriver {
    /// Starts ChromeDriver on a free port and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port();
        let chromium = reaped_chromium()?;
        let chromedriver =
            crate::which("chromedriver").context("chromedriver is not installed: run `make deps` (Debian's chromium-driver)")?;
        // Killed with the test process too (a test killed from outside has no drop).
        let process = crate::reaped_with_us(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("chromedriver did not start")?;
        let driver = Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
        };
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(response) = http.get(format!("{}/status", driver.url)).send().await
                && response.status().is_success()
            {
                return Ok(driver);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("chromedriver did not answer on {} within 10 s", driver.url)
    }

    /// A new headless Chromium with a fresh profile. The flags keep it off the network it cannot
    /// reach here (background services, component updates).
    pub async fn session(&self) -> anyhow::Result<Client> {
        let options = json!({
            "binary": self.chromium.1,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--window-size=1200,900",
                // No opening animation half-way through a screenshot.
                "--force-prefers-reduced-motion",
            ],
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        // ChromeDriver answers plain HTTP on loopback: no TLS in the way.
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .context("a Chromium session")?;
        Ok(client)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Writes a screenshot of `client`'s page to `target/web-chat/<name>.png` (for people to look at)
/// and returns its path.
pub async fn screenshot(client: &Client, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/web-chat"));
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, client.screenshot().await?)?;
    Ok(path)
}
