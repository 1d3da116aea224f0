//! report.html in a real browser: a real run's page, served on loopback, opened by headless
//! Chromium. The test fails on a console error or an uncaught exception, on a chart whose
//! `<svg>` laid out at zero size, and keeps a screenshot. Skipped with a reason where Chromium
//! is absent; `.ci/run` installs it from Debian's packages and sets
//! `GAUNTLET_REQUIRE_BROWSER=1`, so there its absence fails.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gauntlet_testkit::{code, text};

const BIN: &str = env!("CARGO_BIN_EXE_gauntlet");

/// What the page reports about itself, written into the DOM on `load` so `--dump-dom`
/// carries it out: errors seen (console.error, window errors) and every SVG's laid-out size.
const PROBE: &str = r#"<script>
window.__errors = [];
const origError = console.error;
console.error = function (...a) { window.__errors.push(a.join(' ')); origError.apply(console, a); };
window.addEventListener('error', e => window.__errors.push('uncaught: ' + e.message), true);
window.addEventListener('load', () => {
  const svgs = Array.from(document.querySelectorAll('svg')).map(s => {
    const r = s.getBoundingClientRect();
    return [Math.round(r.width), Math.round(r.height)];
  });
  const out = document.createElement('pre');
  out.id = 'gauntlet-probe';
  out.textContent = JSON.stringify({ errors: window.__errors, svgs });
  document.body.appendChild(out);
});
</script>"#;

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            Command::new("which")
                .arg(name)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(text(&o.stdout).trim()))
        });
    if found.is_none() {
        assert!(
            std::env::var_os("GAUNTLET_REQUIRE_BROWSER").is_none(),
            "GAUNTLET_REQUIRE_BROWSER is set but no chromium is installed"
        );
        eprintln!("skipped: no chromium (apt-get install chromium)");
    }
    found
}

/// Serves `page` (with the probe injected after `<head>`) at `/` on 127.0.0.1 until the test
/// ends; every request gets the page, and any request for something else is recorded.
fn serve(page: String) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let others = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&others);
    let body = page.replacen("<head>", &format!("<head>{PROBE}"), 1);
    assert!(body.contains("gauntlet-probe"), "report.html has a <head>");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            // Chromium opens spare connections it may close unused: no request, nothing asked.
            if reader.read_line(&mut first).unwrap_or(0) == 0 || first.trim().is_empty() {
                continue;
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_owned();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let (status, payload) = if path == "/" {
                ("200 OK", body.as_str())
            } else if path == "/favicon.ico" {
                // Chromium asks for it on its own, whatever the page says.
                ("404 Not Found", "")
            } else {
                seen.lock().unwrap().push(path);
                ("404 Not Found", "")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                payload.len()
            );
        }
    });
    (url, others)
}

fn headless(browser: &Path, profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    Command::new("timeout")
        .arg("60")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}

#[test]
fn report_html_renders_every_chart_without_console_errors() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("report");
    // The backtest suite's tear sheet holds most of the page's chart kinds (dates, bars,
    // markers, a histogram); its run takes a second.
    let out = Command::new(BIN)
        .args(["run", "--suite", "backtest", "--report-dir"])
        .arg(&reports)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let page = std::fs::read_to_string(reports.join("report.html")).unwrap();
    let charts = page.matches("<svg").count();
    assert!(charts >= 5, "the tear sheet draws charts: {charts}");
    let (url, others) = serve(page);

    let dom = headless(&browser, &tmp.path().join("p1"), &["--dump-dom"], &url);
    let dom_text = text(&dom.stdout);
    let probe = dom_text
        .split("<pre id=\"gauntlet-probe\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!(
                "no probe output: the page did not load in Chromium:\n{}",
                text(&dom.stderr)
            )
        })
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let probe: serde_json::Value = serde_json::from_str(&probe).unwrap();
    let errors = probe["errors"].as_array().unwrap();
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let svgs = probe["svgs"].as_array().unwrap();
    assert_eq!(svgs.len(), charts, "every chart is in the laid-out page");
    for (i, size) in svgs.iter().enumerate() {
        let (w, h) = (size[0].as_i64().unwrap(), size[1].as_i64().unwrap());
        assert!(w > 100 && h > 50, "chart {i} laid out at {w}x{h}");
    }
    assert!(
        others.lock().unwrap().is_empty(),
        "the page asked for files it does not carry: {:?}",
        others.lock().unwrap()
    );

    let shot = reports.join("report.png");
    let out = headless(
        &browser,
        &tmp.path().join("p2"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400",
            "--hide-scrollbars",
        ],
        &url,
    );
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot ({e}): {}", text(&out.stderr)));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("GAUNTLET_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn the_probe_sees_a_console_error() {
    // The check above can fail: a page that logs an error is caught by the same probe.
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let page = "<!DOCTYPE html><html><head><title>x</title></head><body>\
                <svg width=\"0\" height=\"0\"></svg><script>console.error('boom')</script>\
                </body></html>"
        .to_owned();
    let (url, _) = serve(page);
    let dom = headless(&browser, &tmp.path().join("p"), &["--dump-dom"], &url);
    let dom = text(&dom.stdout);
    assert!(dom.contains("boom"), "{dom}");
    assert!(
        dom.contains("[[0,0]]"),
        "the zero-size svg is measured as such: {dom}"
    );
}
