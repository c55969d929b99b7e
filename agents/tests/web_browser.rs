//! The dashboard in a real headless browser: Debian's chromium, driven by playwright-core
//! (`agents/tests/browser/dashboard.mjs`), against a real `wattchain up` in-process. The page
//! loads with no console error, the plots draw and move, a block appears, the record search
//! proves a committed window, and the page fits a phone. Screenshots are kept under the target
//! directory (`CARGO_TARGET_TMPDIR/web/`).
//!
//! `scripts/test` installs chromium (apt-get) and the npm package; this test runs `npm ci`
//! itself when the package is missing, and never lets playwright download a browser.

mod web_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use wattchain::web::WebConfig;
use web_support::{fast_config, Up, WAIT};

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `npm ci` in the browser package if playwright-core is not installed yet.
fn ensure_playwright(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .current_dir(dir)
        .output()
        .expect("npm runs (scripts/test installs Node.js)");
    assert!(
        out.status.success(),
        "npm ci in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_cabinet_and_the_chain_live_in_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/test installs Debian's chromium"
    );
    let dir = browser_dir();
    ensure_playwright(&dir);
    let mut config = fast_config(WebConfig::default());
    // Slower than the API tests, so that a person (and the screenshot) can follow it.
    config.cabinet_settings.period = std::time::Duration::from_millis(100);
    config.cabinet_settings.window = 4;
    let up = Up::start(config).await;
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web");
    let _ = std::fs::remove_file(artifacts.join("dashboard-desktop.png"));
    let _ = std::fs::remove_file(artifacts.join("dashboard-phone.png"));
    let url = format!("http://{}/", up.http);
    let run = tokio::process::Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .arg(&url)
        .arg(&artifacts)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT * 3, run)
        .await
        .expect("the browser checks finish in time")
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dashboard checks failed:\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
    for shot in ["dashboard-desktop.png", "dashboard-phone.png"] {
        let png = std::fs::read(artifacts.join(shot)).expect("a screenshot");
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "{shot}: a real picture"
        );
    }
    up.stop().await;
}
