//! A real browser for the tests of the pages the host serves: headless Chromium driven by
//! chromedriver through W3C WebDriver (JSON over HTTP/1.1 on a loopback port chromedriver picks).
//!
//! [`Browser`] owns chromedriver, which runs in a process group of its own with Chromium in it;
//! dropping the `Browser` kills that group, so no browser outlives its test, passed or failed.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::SAFETY;

/// The longest one WebDriver command may take (starting Chromium is the slowest).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How often [`Browser::wait_for`] looks at the page again.
const POLL: Duration = Duration::from_millis(100);

/// The screen the page is shown on.
#[derive(Debug, Clone, Copy)]
pub enum Screen {
    /// A desktop window of this many CSS pixels.
    Desktop { width: u32, height: u32 },
    /// A phone (Chromium's mobile emulation: touch, device pixel ratio 3, the page's viewport
    /// meta honoured) this many CSS pixels wide and high.
    Phone { width: u32, height: u32 },
}

/// A headless Chromium with one WebDriver session.
pub struct Browser {
    /// chromedriver, the leader of the process group Chromium runs in.
    driver: tokio::process::Child,
    /// The process group to kill when done.
    group: i32,
    /// Reads chromedriver's stdout so it never blocks on a full pipe.
    drain: tokio::task::JoinHandle<()>,
    /// chromedriver's port on 127.0.0.1.
    port: u16,
    session: String,
    /// Chromium's profile, removed with the `Browser`.
    profile: tempfile::TempDir,
}

/// `name`'s path on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium showing `screen`. Fails the test, saying how
    /// to install them, when `chromium` or `chromedriver` is not on `PATH`.
    pub async fn start(screen: Screen) -> Self {
        let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
            panic!(
                "this test drives a real browser: `chromium` and `chromedriver` must be on PATH \
                 (Debian: apt-get install chromium chromium-driver; .ci/run installs them)"
            )
        };
        let profile = tempfile::Builder::new().prefix("bagpipe-chromium").tempdir().expect("profile dir");
        let mut command = tokio::process::Command::new(&chromedriver);
        command
            .arg("--port=0")
            .arg(format!("--log-path={}", profile.path().join("chromedriver.log").display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        // Its own process group, which Chromium joins: one kill ends both.
        command.as_std_mut().process_group(0);
        let mut driver = command.spawn().expect("start chromedriver");
        let group = driver.id().expect("chromedriver's pid") as i32;
        let mut lines = BufReader::new(driver.stdout.take().expect("chromedriver's stdout")).lines();
        // "ChromeDriver was started successfully on port 41235."
        let port = tokio::time::timeout(SAFETY, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut browser = Self { driver, group, drain, port: 0, session: String::new(), profile };
        browser.port = port.expect("chromedriver did not say which port it listens on");

        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-extensions".to_owned(),
            format!("--user-data-dir={}", browser.profile.path().join("profile").display()),
        ];
        let mut options = json!({"binary": chromium.display().to_string()});
        match screen {
            Screen::Desktop { width, height } => args.push(format!("--window-size={width},{height}")),
            Screen::Phone { width, height } => {
                args.push(format!("--window-size={width},{height}"));
                options["mobileEmulation"] =
                    json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 3.0, "touch": true}});
            }
        }
        options["args"] = json!(args);
        let created = browser
            .command(
                "POST",
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})),
            )
            .await;
        browser.session = created["sessionId"].as_str().expect("a session id").to_owned();
        browser
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.session_command("POST", "url", Some(json!({ "url": url }))).await;
    }

    /// Runs `script` (a function body: `return ...`) in the page and returns its result.
    pub async fn eval(&self, script: &str) -> Value {
        self.session_command("POST", "execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Runs `script` every [`POLL`] until it returns something other than `null`, `false`, `0`
    /// or `""`, and returns that. Fails the test after [`SAFETY`], saying it waited for `what`,
    /// with the page's text and a screenshot at `target/<what>.png`.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + SAFETY;
        loop {
            let value = self.eval(script).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let text = self.eval("return document.body.innerText").await;
                let shot = crate::workspace_root().join("target").join(format!("{}.png", what.replace(' ', "-")));
                self.screenshot(&shot).await;
                panic!(
                    "the page did not show {what} in time (last: {value}); screenshot at {}; its text:\n{}",
                    shot.display(),
                    text.as_str().unwrap_or_default()
                );
            }
            // Polling the page, not synchronisation: the condition is checked, not assumed.
            tokio::time::sleep(POLL).await;
        }
    }

    /// Writes a PNG of what the window shows to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.session_command("GET", "screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 screenshot"))
            .expect("the screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, bytes).expect("write screenshot");
    }

    /// Closes the browser; the `Browser` going out of scope ends chromedriver.
    pub async fn quit(self) {
        self.session_command("DELETE", "", None).await;
    }

    async fn session_command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = if path.is_empty() {
            format!("/session/{}", self.session)
        } else {
            format!("/session/{}/{path}", self.session)
        };
        self.command(method, &path, body).await
    }

    /// One WebDriver command: its `value`, or the test fails with WebDriver's error.
    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let port = self.port;
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            // chromedriver answers `Connection: close` and keeps the connection open all the
            // same: the response ends where its length says.
            let mut answer = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                let n = stream.read(&mut chunk).await?;
                answer.extend_from_slice(&chunk[..n]);
                if let Some(response) = parse_response(&answer, n == 0) {
                    return Ok(response);
                }
                if n == 0 {
                    let text = String::from_utf8_lossy(&answer).into_owned();
                    return Err(std::io::Error::other(format!("not an HTTP response: {text}")));
                }
            }
        };
        let (status, body) = match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => panic!("webdriver {method} {path}: {e}"),
            Err(_) => panic!("webdriver {method} {path}: no answer in {COMMAND_TIMEOUT:?}"),
        };
        let value: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("webdriver {method} {path}: answer is not JSON ({e}): {}", String::from_utf8_lossy(&body))
        });
        let value = value.get("value").cloned().unwrap_or(Value::Null);
        if status != 200 {
            panic!(
                "webdriver {method} {path}: HTTP {status}: {}: {}",
                value["error"].as_str().unwrap_or("?"),
                value["message"].as_str().unwrap_or("")
            );
        }
        value
    }
}

/// The status and body of `answer` once it is a whole HTTP/1.1 response (as long as its
/// `Content-Length`, chunked up to the last chunk, or else everything once the connection ended,
/// `at_end`); `None` while it is not.
fn parse_response(answer: &[u8], at_end: bool) -> Option<(u16, Vec<u8>)> {
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..split]).ok()?;
    let mut body = &answer[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut sized = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body = body.get(..value.parse::<usize>().ok()?)?;
            sized = true;
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    if !chunked {
        return (sized || at_end).then(|| (status, body.to_vec()));
    }
    let mut out = Vec::new();
    loop {
        let end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[end + 2..];
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of a child we spawned and have not reaped (the
        // `Child` still holds it), so the group cannot have been reused.
        unsafe { libc::kill(-self.group, libc::SIGKILL) };
        let _ = self.driver.start_kill();
        self.drain.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn a_response_is_whole_once_its_length_its_last_chunk_or_the_end_came() {
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length:4\r\n\r\n{}{}";
        assert_eq!(parse_response(sized, false), Some((200, b"{}{}".to_vec())));
        assert_eq!(parse_response(&sized[..sized.len() - 1], false), None, "a byte short");
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked, false), Some((404, b"abcde".to_vec())));
        assert_eq!(parse_response(&chunked[..chunked.len() - 7], false), None, "before the last chunk");
        let to_the_end = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it";
        assert_eq!(parse_response(to_the_end, false), None, "more may come");
        assert_eq!(parse_response(to_the_end, true), Some((200, b"all of it".to_vec())));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", false), None, "headers not done");
    }
}
