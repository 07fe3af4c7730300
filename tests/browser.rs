//! Pages in headless Chromium, for tests that check what a browser renders
//! (the live dashboard, an HTML report file): Debian's `chromium` driven
//! over the DevTools protocol (`headless_chrome`, no browser download).
//!
//! ```no_run
//! let Some(page) = Page::open("file:///tmp/report.html") else {
//!     return; // no chromium here: the test said it skips
//! };
//! assert!(page.wait_until("document.querySelectorAll('svg').length > 0", Duration::from_secs(5)));
//! assert_eq!(page.eval("document.title"), "Report");
//! page.screenshot("screenshots/report.png");
//! assert!(page.console_errors().is_empty(), "{:?}", page.console_errors());
//! ```
//!
//! Without a browser a test skips, saying so on stderr, unless
//! `FRAUDSTREAM_REQUIRE_BROWSER` is set (CI sets it): then it fails.

use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::{Log, Page as Cdp, Runtime};
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The browser to drive: `$CHROME`, else the first of `chromium`,
/// `chromium-browser` and `google-chrome` on `PATH`.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// The target directory of this build (screenshots go under it).
pub fn target_dir() -> PathBuf {
    // The test binary is <target>/<profile>/deps/integration-<hash>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// One page in its own headless Chromium, watched for errors from before
/// it loads.
pub struct Page {
    tab: Arc<Tab>,
    errors: Arc<Mutex<Vec<String>>>,
    // Dropped last: closing the browser ends the process.
    _browser: Browser,
}

impl Page {
    /// Open `url` (`http://` or `file://`) and wait for it to load; `None`
    /// when there is no browser (after saying the test skips), a panic
    /// then if `FRAUDSTREAM_REQUIRE_BROWSER` is set.
    pub fn open(url: &str) -> Option<Page> {
        let Some(path) = chromium() else {
            if std::env::var_os("FRAUDSTREAM_REQUIRE_BROWSER").is_some() {
                panic!(
                    "no chromium: FRAUDSTREAM_REQUIRE_BROWSER is set, so the browser tests may \
                     not skip (install Debian's chromium, or set CHROME to a Chrome binary)"
                );
            }
            eprintln!("skipped: no chromium (install Debian's chromium)");
            return None;
        };
        // Root (CI, containers) cannot use Chromium's sandbox.
        let options = LaunchOptions {
            path: Some(path.clone()),
            headless: true,
            sandbox: false,
            enable_gpu: false,
            window_size: Some((1400, 1000)),
            idle_browser_timeout: Duration::from_secs(300),
            args: vec![
                OsStr::new("--disable-dev-shm-usage"),
                OsStr::new("--no-first-run"),
                OsStr::new("--disable-extensions"),
            ],
            ..LaunchOptions::default()
        };
        let browser =
            Browser::new(options).unwrap_or_else(|e| panic!("starting {}: {e:#}", path.display()));
        let tab = browser.new_tab().expect("a new tab");
        tab.set_default_timeout(Duration::from_secs(30));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        tab.add_event_listener(Arc::new(move |event: &Event| {
            if let Some(e) = error_of(event) {
                seen.lock().unwrap().push(e);
            }
        }))
        .expect("a listener");
        tab.enable_runtime().expect("Runtime.enable");
        tab.enable_log().expect("Log.enable");
        tab.navigate_to(url)
            .and_then(|t| t.wait_until_navigated())
            .unwrap_or_else(|e| panic!("loading {url}: {e:#}"));
        Some(Page {
            tab,
            errors,
            _browser: browser,
        })
    }

    /// The value of the JavaScript expression `js` (a promise is awaited),
    /// as JSON (`undefined` is null); panics on an exception.
    pub fn eval(&self, js: &str) -> Value {
        let r = self
            .tab
            .call_method(Runtime::Evaluate {
                expression: js.to_string(),
                object_group: None,
                include_command_line_api: None,
                silent: Some(true),
                context_id: None,
                return_by_value: Some(true),
                generate_preview: None,
                user_gesture: None,
                await_promise: Some(true),
                throw_on_side_effect: None,
                timeout: None,
                disable_breaks: None,
                repl_mode: None,
                allow_unsafe_eval_blocked_by_csp: None,
                unique_context_id: None,
                serialization_options: None,
            })
            .unwrap_or_else(|e| panic!("evaluating {js}: {e:#}"));
        if let Some(x) = r.exception_details {
            panic!("evaluating {js}: {}", exception_text(&x));
        }
        r.result.value.unwrap_or(Value::Null)
    }

    /// Whether the JavaScript expression `js` became truthy within
    /// `timeout` (checked every 100 ms).
    pub fn wait_until(&self, js: &str, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let check = format!("!!({js})");
        loop {
            if self.eval(&check) == Value::Bool(true) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What went wrong in the page since before it loaded: `console.error`
    /// calls, uncaught exceptions, and the browser's own error entries
    /// (failed loads, blocked requests, policy violations).
    pub fn console_errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// A PNG of the whole page at `path`: relative to the target directory
    /// ([`target_dir`]) unless absolute; its folder is created. Returns
    /// where it was written.
    pub fn screenshot(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = target_dir().join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        let size = self
            .eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]");
        let (w, h) = (
            size[0].as_f64().unwrap_or(1400.0),
            size[1].as_f64().unwrap_or(1000.0),
        );
        let png = self
            .tab
            .call_method(Cdp::CaptureScreenshot {
                format: Some(Cdp::CaptureScreenshotFormatOption::Png),
                quality: None,
                clip: Some(Cdp::Viewport {
                    x: 0.0,
                    y: 0.0,
                    width: w,
                    height: h,
                    scale: 1.0,
                }),
                from_surface: Some(true),
                capture_beyond_viewport: Some(true),
                optimize_for_speed: None,
            })
            .unwrap_or_else(|e| panic!("screenshot: {e:#}"));
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.data)
            .expect("a base64 PNG");
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

/// The error an event reports, if it is one.
fn error_of(event: &Event) -> Option<String> {
    match event {
        Event::RuntimeConsoleAPICalled(e)
            if matches!(
                e.params.Type,
                Runtime::ConsoleAPICalledEventTypeOption::Error
                    | Runtime::ConsoleAPICalledEventTypeOption::Assert
            ) =>
        {
            let args: Vec<String> = e
                .params
                .args
                .iter()
                .map(|a| match (&a.value, &a.description) {
                    (Some(Value::String(s)), _) => s.clone(),
                    (Some(v), _) => v.to_string(),
                    (None, Some(d)) => d.clone(),
                    (None, None) => format!("{:?}", a.Type),
                })
                .collect();
            Some(format!("console.error: {}", args.join(" ")))
        }
        Event::RuntimeExceptionThrown(e) => Some(format!(
            "uncaught: {}",
            exception_text(&e.params.exception_details)
        )),
        Event::LogEntryAdded(e) if matches!(e.params.entry.level, Log::LogEntryLevel::Error) => {
            let entry = &e.params.entry;
            Some(format!(
                "{:?}: {}{}",
                entry.source,
                entry.text,
                entry
                    .url
                    .as_deref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default()
            ))
        }
        _ => None,
    }
}

/// An exception's message and where it was thrown.
fn exception_text(x: &Runtime::ExceptionDetails) -> String {
    let description = x
        .exception
        .as_ref()
        .and_then(|e| e.description.clone())
        .unwrap_or_default();
    format!(
        "{} {description} at {}:{}:{}",
        x.text,
        x.url.as_deref().unwrap_or("?"),
        x.line_number,
        x.column_number
    )
}

#[test]
fn a_file_page_is_rendered_and_its_errors_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("page.html");
    std::fs::write(
        &file,
        r#"<!DOCTYPE html><html><head><title>Harness</title><link rel="icon" href="data:,"></head>
<body><svg data-chart="x" width="100" height="50"><circle cx="10" cy="10" r="3"/><circle cx="20" cy="20" r="3"/></svg>
<script>
console.error("wrong", 42);
setTimeout(() => { document.body.dataset.ready = "yes"; throw new Error("late boom"); }, 200);
</script></body></html>"#,
    )
    .unwrap();
    let url = format!("file://{}", file.display());
    let Some(page) = Page::open(&url) else {
        return;
    };
    assert_eq!(page.eval("document.title"), "Harness");
    assert_eq!(
        page.eval("document.querySelectorAll('[data-chart=x] circle').length"),
        2
    );
    assert_eq!(
        page.eval("({a: [1, 'two']})"),
        serde_json::json!({"a": [1, "two"]})
    );
    assert_eq!(page.eval("undefined"), Value::Null);
    assert_eq!(page.eval("Promise.resolve(7)"), 7, "promises are awaited");
    assert!(page.wait_until(
        "document.body.dataset.ready === 'yes'",
        Duration::from_secs(10)
    ));
    assert!(!page.wait_until("false", Duration::from_millis(300)));
    assert!(
        page.wait_until("true", Duration::ZERO),
        "checked once even without time"
    );
    let errors = page.console_errors();
    assert!(
        errors.iter().any(|e| e.contains("console.error: wrong 42")),
        "{errors:?}"
    );
    assert!(
        page.wait_until("true", Duration::from_millis(100))
            && page
                .console_errors()
                .iter()
                .any(|e| e.contains("late boom")),
        "{:?}",
        page.console_errors()
    );
    let shot = page.screenshot("screenshots/browser-harness.png");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{}", shot.display());
    assert!(shot.starts_with(target_dir()));
}

#[test]
fn a_failed_load_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("page.html");
    std::fs::write(
        &file,
        r#"<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>
<img src="missing.png"></body></html>"#,
    )
    .unwrap();
    let Some(page) = Page::open(&format!("file://{}", file.display())) else {
        return;
    };
    assert!(
        page.wait_until(
            "document.readyState === 'complete'",
            Duration::from_secs(10)
        ),
        "loaded"
    );
    let until = Instant::now() + Duration::from_secs(5);
    while page.console_errors().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let errors = page.console_errors();
    assert!(
        errors.iter().any(|e| e.contains("missing.png")),
        "{errors:?}"
    );
}
