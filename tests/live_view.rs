//! The live status page (`/` on the admin address) in a real browser, headless Chromium through
//! chromedriver, while a pipeline runs: the processed count rises, a fixture's trap shows up in
//! the event list, a swap changes the version shown (a refused one is listed and changes nothing),
//! and on a phone-sized screen the page does not scroll sideways. Screenshots go to
//! `target/live-view.png` and `target/live-view-phone.png`.

use bagpipe_test_support::browser::{Browser, Screen};
use bagpipe_test_support::{Bagpipe, BlockDir, Want, Write, artifacts, variant, version_of, workspace_root};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// A source that never runs dry (two bags every 20 ms) into a counter, and a block that traps on
/// a bag marked `"crash": true`, which nothing sends it yet.
const MANIFEST: &str = "[[block]]\nname = \"counter\"\nafter = []\n\n\
     [[block]]\nname = \"bench_source\"\nresponsibility = \"source\"\nafter = [\"counter\"]\n\
     [block.config]\nto = \"counter\"\ncount = 100000000\nbatch = 2\ninterval_ms = 20\n\n\
     [[block]]\nname = \"faulty\"\nafter = []\n[block.config]\nfault = \"trap\"\nin = \"marked\"\nquiet = true\n";

/// [`MANIFEST`] with one more block, which sends `faulty` the bag it traps on.
fn with_trigger() -> String {
    format!(
        "{MANIFEST}\n[[block]]\nname = \"sender\"\nresponsibility = \"trigger\"\nafter = []\n\
         [block.config]\nto = \"faulty\"\nbags = ['{{\"crash\": true}}']\n"
    )
}

/// A script returning the `data-value` of column `col` in block `block`'s row, or `null`.
fn cell(block: &str, col: &str) -> String {
    format!(
        r#"const td = document.querySelector('#blocks tr[data-block="{block}"] td[data-col="{col}"]');
           return td ? td.dataset.value : null;"#
    )
}

/// A script returning the text shown in column `col` of block `block`'s row, or `null`.
fn text(block: &str, col: &str) -> String {
    format!(
        r#"const td = document.querySelector('#blocks tr[data-block="{block}"] td[data-col="{col}"]');
           return td ? td.textContent : null;"#
    )
}

/// A script that is true once the event list shows an event of `kind` for `block` (`null` while
/// there is none, `false` while it is there but hidden).
fn event(kind: &str, block: &str) -> String {
    format!(
        r#"const li = document.querySelector('#events li[data-kind="{kind}"][data-block="{block}"]');
           return li ? li.offsetParent !== null : null;"#
    )
}

/// `block`'s processed count on the page once it is above `above`.
async fn processed_above(page: &Browser, block: &str, above: u64) -> u64 {
    let script =
        format!("const v = Number(({})()); return v > {above} ? v : null;", as_function(&cell(block, "processed")));
    let what = format!("{block} processed above {above}");
    page.wait_for(&what, &script).await.as_u64().expect("a count")
}

/// A script that is true once column `col` of block `block` is a number above 0.
fn rate_above_zero(block: &str, col: &str) -> String {
    format!("return Number(({})()) > 0;", as_function(&cell(block, col)))
}

/// `body` (a script with `return`) as a function expression, to call inside another script.
fn as_function(body: &str) -> String {
    format!("function () {{ {body} }}")
}

/// Where a screenshot for people goes: the workspace's `target/`.
fn screenshot_path(name: &str) -> std::path::PathBuf {
    let target = workspace_root().join("target");
    std::fs::create_dir_all(&target).expect("target directory");
    target.canonicalize().expect("target directory").join(name)
}

#[tokio::test]
async fn the_live_page_follows_a_running_pipeline_its_faults_and_swaps() {
    let dir = BlockDir::new(
        MANIFEST,
        &[
            ("counter", artifacts::COUNTER),
            ("bench_source", artifacts::BENCH_SOURCE),
            ("faulty", artifacts::FAULTY),
            ("sender", artifacts::SENDER),
        ],
    );
    let mut host = Bagpipe::run_with(BIN, &dir, &["--admin", "127.0.0.1:0"]);
    // The reloader watches before the test writes anything into the directory.
    let started = host.log_records(&[Want::event("admin"), Want::event("running"), Want::event("watching")]).await;
    let url = format!("http://{}/", started[0]["addr"].as_str().expect("the admin address"));

    let page = Browser::start(Screen::Desktop { width: 1280, height: 900 }).await;
    page.goto(&url).await;

    // Bags flow, and the page follows: the count rises between two looks, the rates are not 0.
    let first = processed_above(&page, "counter", 0).await;
    processed_above(&page, "counter", first).await;
    page.wait_for("bags in per second at the counter", &rate_above_zero("counter", "in")).await;
    page.wait_for("bags out per second at the source", &rate_above_zero("source", "out")).await;
    page.wait_for("the live connection", r#"return document.querySelector('#conn').dataset.state === "live";"#).await;
    page.wait_for(
        "the host's uptime",
        r#"return document.querySelector('#host [data-field="uptime"] dd')?.textContent;"#,
    )
    .await;

    // A trap: the page lists the fault (and counts it) without being reloaded.
    dir.write_as("bagpipe.toml", with_trigger().as_bytes(), Write::Rename);
    host.log_record(Want::event("fault").block("faulty")).await;
    page.wait_for("a fault of faulty in the event list", &event("fault", "faulty")).await;
    page.wait_for(
        "faulty's fault count",
        &format!("return Number(({})()) > 0;", as_function(&cell("faulty", "faults"))),
    )
    .await;

    // A swap: the version cell changes to the new version, and the swap is an event.
    let old = page.eval(&cell("counter", "version")).await;
    let bytes = variant(artifacts::COUNTER, "live-view");
    let version = version_of(&bytes);
    assert_ne!(old.as_str(), Some(version.as_str()), "the variant is a new version");
    dir.write_as("counter.wasm", &bytes, Write::Rename);
    host.log_record(Want::event("swapped").block("counter")).await;
    page.wait_for(
        "the counter's new version",
        &format!("return ({})() === {:?};", as_function(&cell("counter", "version")), version),
    )
    .await;
    page.wait_for("a swap of counter in the event list", &event("swapped", "counter")).await;
    let swap = page.wait_for("the counter's last swap time", &cell("counter", "swap")).await;
    assert!(swap.as_str().is_some_and(|at| at.parse::<u64>().is_ok()), "the last swap's time: {swap}");
    // The swap cell says how long ago and how long the pause was; the queue cell its capacity.
    let swap_text = page.eval(&text("counter", "swap")).await;
    assert!(swap_text.as_str().is_some_and(|t| t.contains(" · ") && t.ends_with('s')), "the swap's pause: {swap_text}");
    let queue_text = page.eval(&text("counter", "queue")).await;
    assert!(
        queue_text.as_str().is_some_and(|t| t.ends_with(" / 1\u{202f}024")),
        "depth against capacity: {queue_text}"
    );
    // Bags still flow through the new version.
    let before = processed_above(&page, "counter", 0).await;
    processed_above(&page, "counter", before).await;

    // A version that refuses to start: the refused swap is listed, the running version stays.
    let refusing = std::fs::read(artifacts::REFUSES_TO_START).expect("refuses_to_start");
    dir.write_as("counter.wasm", &refusing, Write::Rename);
    host.log_record(Want::event("swap_refused").block("counter")).await;
    page.wait_for("a refused swap of counter in the event list", &event("swap_refused", "counter")).await;
    assert_eq!(page.eval(&cell("counter", "version")).await.as_str(), Some(version.as_str()), "the running version");

    let shot = screenshot_path("live-view.png");
    page.screenshot(&shot).await;
    println!("screenshot: {}", shot.display());
    page.quit().await;

    // A phone: every block a card that fits, nothing to scroll sideways.
    let phone = Browser::start(Screen::Phone { width: 390, height: 844 }).await;
    phone.goto(&url).await;
    processed_above(&phone, "counter", 0).await;
    phone.wait_for("bags in per second at the counter on a phone", &rate_above_zero("counter", "in")).await;
    phone.wait_for("the event list", "return document.querySelectorAll('#events li').length > 0;").await;
    let widths = phone
        .eval(
            "const d = document.documentElement; \
             const right = Math.max(...[...document.querySelectorAll('#blocks td, #blocks th')] \
                 .filter((c) => c.offsetParent !== null).map((c) => c.getBoundingClientRect().right)); \
             return [window.innerWidth, d.scrollWidth, document.body.scrollWidth, Math.ceil(right)];",
        )
        .await;
    let [viewport, page_width, body_width, rightmost_cell] =
        [0, 1, 2, 3].map(|i| widths[i].as_u64().unwrap_or_else(|| panic!("widths: {widths}")));
    assert_eq!(viewport, 390, "the phone's viewport is 390 CSS pixels: {widths}");
    assert!(page_width <= viewport && body_width <= viewport, "the page scrolls sideways on a phone: {widths}");
    assert!(rightmost_cell <= viewport, "a block's values run off a phone's screen: {widths}");
    let shot = screenshot_path("live-view-phone.png");
    phone.screenshot(&shot).await;
    println!("screenshot: {}", shot.display());

    // The host goes away: the page says so instead of showing the last numbers as live.
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
    phone
        .wait_for(
            "the lost connection",
            r#"const c = document.querySelector('#conn');
               return c.dataset.state === "disconnected" && c.textContent.includes("retrying");"#,
        )
        .await;
    phone.quit().await;
}
