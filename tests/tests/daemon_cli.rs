//! The CLI against running daemons: two `intercity node run` processes; a record added with the
//! CLI on one city shows up in the CLI listing of the other.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use intercity_tests::{NodeProcess, free_port};

fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = intercity_tests::run_cli(dir, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn id_of(dir: &Path) -> String {
    let (ok, out, err) = cli(dir, &["whoami", "--json"]);
    assert!(ok, "{err}");
    serde_json::from_str::<serde_json::Value>(&out).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string()
}

fn run_daemon(dir: &Path, port: u16) -> NodeProcess {
    run_daemon_with(dir, port, &[])
}

fn run_daemon_with(dir: &Path, port: u16, extra: &[&str]) -> NodeProcess {
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let args = [&["--listen", &listen, "--anti-entropy-secs", "1"], extra].concat();
    intercity_tests::start_node(dir, &args, Duration::from_secs(20))
}

/// Stops a daemon with SIGTERM, as systemd does, and waits for it.
fn terminate(daemon: &mut Child) -> std::process::ExitStatus {
    let pid = daemon.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(kill.expect("kill").success());
    daemon.wait().expect("wait")
}

#[test]
fn a_record_added_through_one_daemon_is_listed_on_the_peer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (milan, brno) = (tmp.path().join("milan"), tmp.path().join("brno"));
    assert!(cli(&milan, &["init", "--city", "Milan", "--country", "IT"]).0);
    assert!(cli(&brno, &["init", "--city", "Brno", "--country", "CZ"]).0);
    let (milan_id, brno_id) = (id_of(&milan), id_of(&brno));
    let (pm, pb) = (free_port(), free_port());
    // Offline roster setup: Milan knows where Brno listens; Brno trusts Milan.
    let addr = format!("/ip4/127.0.0.1/tcp/{pb}");
    assert!(
        cli(
            &milan,
            &["peers", "add", &brno_id, "--name", "Brno", "--addr", &addr]
        )
        .0
    );
    assert!(cli(&brno, &["peers", "add", &milan_id, "--name", "Milan"]).0);
    let mut brno_daemon = run_daemon(&brno, pb);
    let _milan_daemon = run_daemon(&milan, pm);

    // While the daemon runs, the CLI goes through it (the store is locked by the daemon).
    let (ok, out, err) = cli(
        &milan,
        &[
            "practice",
            "add",
            "--title",
            "FabriQ",
            "--summary",
            "Milan's first social innovation incubator",
            "--json",
        ],
    );
    assert!(ok, "add through the daemon failed: {err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();

    // One exit-code table for both paths (issue #12): the wrong kind of record is "not found"
    // (1) through the daemon as without one (it used to be 2 through the daemon).
    let wrong_kind = intercity_tests::run_cli(&milan, &["project", "show", &id[..8]]);
    assert_eq!(
        wrong_kind.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&wrong_kind.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, _) = cli(&brno, &["practice", "list", "--json"]);
        if ok && out.contains(&id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Brno never listed Milan's practice: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Bulk import through the daemon: signed, published, searchable on the peer.
    let file = tmp.path().join("more.jsonl");
    std::fs::write(
        &file,
        "{\"kind\":\"practice\",\"title\":\"Open data portal\",\"summary\":\"Datasets for civic hackers\"}\n\
         {\"kind\":\"project\",\"name\":\"Youth Guarantee\",\"status\":\"running\"}\n",
    )
    .expect("write");
    let (ok, out, err) = cli(&milan, &["import", file.to_str().expect("utf-8"), "--json"]);
    assert!(ok, "import through the daemon failed: {err}");
    assert!(out.contains("\"created\": 2"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, _) = cli(&brno, &["search", "civic", "hackers", "--json"]);
        if ok && out.contains("Open data portal") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Brno never found the import: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // An invitation made through the daemon carries the address given with --addr.
    let riga = tmp.path().join("riga");
    assert!(cli(&riga, &["init", "--city", "Riga", "--country", "LV"]).0);
    let public = "/ip4/198.51.100.7/tcp/4001";
    let (ok, token, err) = cli(
        &milan,
        &["invite", "create", "--for", &id_of(&riga), "--addr", public],
    );
    assert!(ok, "invite through the daemon failed: {err}");
    let (ok, out, err) = cli(&riga, &["invite", "accept", token.trim(), "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains(public), "{out}");

    let (ok, out, _) = cli(&brno, &["status", "--json"]);
    assert!(ok);
    let status: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(status["daemon"], true);
    assert!(
        status["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .any(|p| p["id"] == milan_id.as_str() && p["connected"] == true),
        "{out}"
    );

    // The sync line: Brno holds what Milan holds (Milan's daemon heads say so after a sync).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, _) = cli(&brno, &["status"]);
        if ok && out.contains("up to date with the peers synced with") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Brno's status never said it is up to date: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM: a graceful shutdown, then the CLI opens the store directly again.
    let status = terminate(&mut brno_daemon.0);
    assert!(status.success(), "daemon exit: {status}");
    let (ok, out, err) = cli(&brno, &["practice", "show", &id[..8], "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("FabriQ"));
}

/// The README's main command, smaller: real nodes, a city joining by invitation, a forgery
/// rejected, and an exit code of 0 only when every city converged.
#[test]
fn the_demo_converges_with_a_city_joining_by_invitation() {
    let keep = tempfile::tempdir().expect("tmp");
    let out = Command::new(intercity_tests::intercity_bin())
        .args(["demo", "--cities", "4", "--seed", "7", "--keep"])
        .arg(keep.path())
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("accepted Milan's invitation and joined"),
        "{text}"
    );
    assert!(text.contains("all cities converged"), "{text}");
    // Its meetings are dated from today: `agenda next` on a kept city shows the study visit.
    let (ok, next, err) = cli(&keep.path().join("brno"), &["agenda", "next"]);
    assert!(ok && next.contains("Study visit to Milan"), "{next}{err}");
    let (ok, all, err) = cli(
        &keep.path().join("brno"),
        &["agenda", "list", "--status", "held"],
    );
    assert!(ok && all.contains("Kick-off meeting in Brno"), "{all}{err}");
}

/// Waits until `check` holds for the output of `args` run in `dir`, or fails with `what`.
fn wait_for(dir: &Path, args: &[&str], what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = cli(dir, args);
        if ok && check(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "{what}: {out}{err}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The invitation flow as city staff run it, through both daemons: Milan's node asks its
/// operator, who approves; the new city then receives Milan's records.
#[test]
fn a_city_joins_by_invitation_through_the_cli_after_approval() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (milan, porto) = (tmp.path().join("milan"), tmp.path().join("porto"));
    assert!(cli(&milan, &["init", "--city", "Milan", "--country", "IT"]).0);
    assert!(cli(&porto, &["init", "--city", "Porto", "--country", "PT"]).0);
    assert!(cli(&milan, &["practice", "add", "--title", "OpenCare"]).0);
    let porto_id = id_of(&porto);
    let _milan_daemon = run_daemon_with(&milan, free_port(), &["--approve-joins"]);
    let _porto_daemon = run_daemon(&porto, free_port());

    // The token names the daemon's listen address; Porto accepts it through its daemon.
    let (ok, token, err) = cli(&milan, &["invite", "create", "--for", &porto_id]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&porto, &["invite", "accept", token.trim()]);
    assert!(ok, "{err}");
    assert!(out.contains("added Milan"), "{out}");

    let pending = wait_for(
        &milan,
        &["invite", "pending", "--json"],
        "no join waits",
        |o| o.contains(&porto_id),
    );
    assert!(pending.contains("\"name\": \"Porto\""), "{pending}");
    let (ok, out, err) = cli(&milan, &["status", "--json"]);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(status["joins_waiting"][0]["id"], porto_id.as_str(), "{out}");
    let (ok, out, _) = cli(&milan, &["status"]);
    assert!(ok && out.contains("1 waiting for approval"), "{out}");
    let (ok, out, _) = cli(&porto, &["practice", "list", "--json"]);
    assert!(
        ok && !out.contains("OpenCare"),
        "records before approval: {out}"
    );
    let (ok, out, err) = cli(&milan, &["invite", "approve", &porto_id]);
    assert!(ok, "{err}");
    assert!(out.contains("admitted Porto"), "{out}");

    wait_for(
        &porto,
        &["practice", "list", "--json"],
        "Porto never got Milan's practice",
        |o| o.contains("OpenCare"),
    );
    let roster = wait_for(
        &milan,
        &["peers", "list", "--json"],
        "Porto not in Milan's roster",
        |o| o.contains(&porto_id),
    );
    assert!(roster.contains("Porto"), "{roster}");
    let list = wait_for(
        &milan,
        &["invite", "list", "--json"],
        "the token is not used",
        |o| o.contains(&porto_id),
    );
    assert!(list.contains("\"uses\": 0"), "{list}");
}

/// Issue #17: `intercity node run` started and stopped 20 times while a script keeps running
/// CLI reads and writes on the same data directory. The daemon comes up every time (it waits
/// for a CLI command holding the store; CLI commands wait for a daemon that is starting or
/// stopping), every command succeeds, and every write is in the store at the end.
#[test]
fn the_daemon_comes_up_every_time_while_cli_commands_hold_the_store() {
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let tmp = tempfile::tempdir().expect("tmp");
    let milan = tmp.path().join("milan");
    assert!(cli(&milan, &["init", "--city", "Milan", "--country", "IT"]).0);
    let stop = Arc::new(AtomicBool::new(false));
    let script = {
        let (dir, stop) = (milan.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut written, mut failures) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let title = format!("Written {n}");
                let (ok, _, err) = cli(&dir, &["practice", "add", "--title", &title]);
                if ok {
                    written.push(title);
                } else {
                    failures.push(format!("write {n}: {err}"));
                }
                let read: &[&str] = match n % 3 {
                    0 => &["status", "--json"],
                    1 => &["practice", "list", "--json"],
                    _ => &["search", "written", "--json"],
                };
                let (ok, _, err) = cli(&dir, read);
                if !ok {
                    failures.push(format!("read {read:?}: {err}"));
                }
            }
            (written, failures)
        })
    };
    let port = free_port();
    let (mut waited, started) = (0, Instant::now());
    for round in 0..20 {
        let mut child = Command::new(intercity_tests::intercity_bin())
            .arg("--data-dir")
            .arg(&milan)
            .args(["node", "run", "--no-mdns", "--listen"])
            .arg(format!("/ip4/127.0.0.1/tcp/{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn daemon");
        // "running" on stderr once the daemon is up; its whole stderr if it exits instead.
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = String::new();
        let mut line = String::new();
        while stderr.read_line(&mut line).expect("read") > 0 && !line.contains("running; listening")
        {
            seen.push_str(&line);
            line.clear();
        }
        assert!(
            line.contains("running; listening"),
            "round {round}: the daemon did not come up: {seen}{:?}",
            child.wait()
        );
        waited += usize::from(seen.contains("waiting for it"));
        if round == 0 {
            // A second daemon on the same directory is refused at once, naming the first.
            let second = intercity_tests::run_cli(
                &milan,
                &[
                    "node",
                    "run",
                    "--no-mdns",
                    "--listen",
                    "/ip4/127.0.0.1/tcp/0",
                ],
            );
            let err = String::from_utf8_lossy(&second.stderr);
            assert!(!second.status.success(), "a second daemon ran: {err}");
            assert!(
                err.contains("a daemon already runs") && err.contains(&child.id().to_string()),
                "{err}"
            );
        }
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        std::thread::sleep(Duration::from_millis(150 + 37 * (round % 5)));
        // A client idle on its connection (a script, a suspended command) does not hold up
        // the stop: once stopping, the daemon closes connections idle for half a second.
        let idle = (round == 1).then(|| {
            use std::io::Write;
            let mut conn = std::os::unix::net::UnixStream::connect(milan.join("control.sock"))
                .expect("connect");
            conn.write_all(b"{\"op\":\"profile\"}\n").expect("send");
            let mut answer = String::new();
            BufReader::new(&conn)
                .read_line(&mut answer)
                .expect("answer");
            assert!(answer.contains("\"ok\""), "{answer}");
            conn
        });
        let stopping = Instant::now();
        let status = terminate(&mut child);
        assert!(status.success(), "round {round}: daemon exit: {status}");
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "round {round}: the stop took {:?}",
            stopping.elapsed()
        );
        drop(idle);
        std::thread::sleep(Duration::from_millis(20 * (round % 4)));
    }
    stop.store(true, Ordering::Relaxed);
    let (written, failures) = script.join().expect("script");
    eprintln!(
        "20 daemon runs in {:?}: {waited} waited for a CLI command; {} writes, {} failed",
        started.elapsed(),
        written.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "CLI commands failed: {failures:#?}");
    assert!(
        written.len() >= 20,
        "the script wrote only {}",
        written.len()
    );
    let (ok, out, err) = cli(&milan, &["practice", "list", "--limit", "0", "--json"]);
    assert!(ok, "{err}");
    let lost: Vec<_> = written
        .iter()
        .filter(|t| !out.contains(&format!("\"{t}\"")))
        .collect();
    assert!(lost.is_empty(), "writes lost: {lost:?}");
}

/// systemd's `Type=notify` and `WatchdogSec=`: the daemon says READY=1 once it serves, feeds
/// the watchdog while its network loop answers, and says STOPPING=1 on SIGTERM.
#[test]
fn the_daemon_notifies_systemd_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("milan");
    let (ok, _, err) = cli(&dir, &["init", "--city", "Milan"]);
    assert!(ok, "{err}");
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut child = Command::new(intercity_tests::intercity_bin())
        .arg("--data-dir")
        .arg(&dir)
        .args(["node", "run", "--no-mdns", "--listen"])
        .arg(format!("/ip4/127.0.0.1/tcp/{}", free_port()))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon");
    let mut buf = [0u8; 1024];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert!(
        dir.join("control.sock").exists(),
        "ready before the control socket"
    );
    let mut fed = 0;
    while fed < 2 {
        let msg = next();
        assert_eq!(msg, "WATCHDOG=1");
        fed += 1;
    }
    let status = terminate(&mut child);
    assert!(status.success(), "{status:?}");
    let mut stopping = false;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    while let Ok(n) = socket.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]) == "STOPPING=1";
    }
    assert!(stopping, "no STOPPING=1");
}

/// `node run --metrics ADDR`: GET /metrics in the Prometheus text format, GET /health for a
/// load balancer; anything else is refused.
#[test]
fn the_daemon_serves_metrics_and_health_when_asked() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("milan");
    let (ok, _, err) = cli(&dir, &["init", "--city", "Milan"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&dir, &["practice", "add", "--title", "FabriQ"]);
    assert!(ok, "{err}");
    let metrics = format!("127.0.0.1:{}", free_port());
    let _daemon = run_daemon_with(&dir, free_port(), &["--metrics", &metrics]);
    let get = |request: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(&metrics) {
                s.write_all(request.as_bytes()).expect("write");
                let mut out = String::new();
                s.read_to_string(&mut out).expect("read");
                return out;
            }
            assert!(Instant::now() < deadline, "no metrics server on {metrics}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let health = get("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let body = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("text/plain; version=0.0.4"), "{body}");
    assert!(body.contains("# TYPE intercity_entries gauge"), "{body}");
    assert!(
        body.contains("intercity_entries{status=\"accepted\"} 1"),
        "{body}"
    );
    assert!(body.contains("intercity_peers_connected 0"), "{body}");
    // libp2p's own metrics, in OpenMetrics: connections, bandwidth, gossipsub, identify, ping.
    let libp2p = get("GET /metrics/libp2p HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(libp2p.starts_with("HTTP/1.1 200"), "{libp2p}");
    assert!(libp2p.contains("application/openmetrics-text"), "{libp2p}");
    assert!(libp2p.contains("# TYPE libp2p_swarm_"), "{libp2p}");
    assert!(libp2p.contains("# TYPE libp2p_gossipsub_"), "{libp2p}");
    assert!(libp2p.trim_end().ends_with("# EOF"), "{libp2p}");
    assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(get("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    // Off by default: config show says so.
    let (ok, out, _) = cli(&dir, &["config", "show"]);
    assert!(
        ok && out.contains("metrics") && out.contains("off"),
        "{out}"
    );
}

/// `node run --calendar ADDR`: a group's meetings as an iCalendar feed at a URL with a secret;
/// a wrong, replaced or withdrawn secret gets 404.
#[test]
fn the_daemon_serves_a_group_s_calendar_at_its_secret_url() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("milan");
    let (ok, _, err) = cli(&dir, &["init", "--city", "Milan"]);
    assert!(ok, "{err}");
    let calendar = format!("127.0.0.1:{}", free_port());
    let _daemon = run_daemon_with(&dir, free_port(), &["--calendar", &calendar]);
    let (ok, _, err) = cli(
        &dir,
        &["group", "create", "--name", "Smart Social Inclusion"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &dir,
        &[
            "agenda",
            "create",
            "--group",
            "Smart Social Inclusion",
            "--title",
            "Study visit to Milan",
            "--start",
            "2017-02-23",
            "--time-zone",
            "Europe/Rome",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = cli(
        &dir,
        &[
            "agenda",
            "item",
            "add",
            "Study visit to Milan",
            "--title",
            "FabriQ",
            "--slot",
            "11:00-12:30",
        ],
    );
    assert!(ok, "{err}");
    let base = format!("http://{calendar}");
    let url_of = |extra: &[&str]| {
        let mut args = vec!["calendar", "url", "Smart Social Inclusion", "--base", &base];
        args.extend_from_slice(extra);
        let (ok, out, err) = cli(&dir, &args);
        assert!(ok, "{err}");
        out.trim().to_string()
    };
    let url = url_of(&[]);
    assert!(
        url.starts_with(&format!("{base}/calendar/")) && url.ends_with(".ics"),
        "{url}"
    );
    assert_eq!(url_of(&[]), url, "the same URL until it is replaced");
    let get = |url: &str| {
        let path = url.strip_prefix(&base).expect("base");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(&calendar) {
                s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                    .expect("write");
                let mut out = String::new();
                s.read_to_string(&mut out).expect("read");
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "no calendar server on {calendar}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let reply = get(&url);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("Content-Type: text/calendar"), "{reply}");
    assert!(
        reply.contains("Cache-Control: private, no-store"),
        "{reply}"
    );
    assert!(get(&format!("{url}?nocache=1")).starts_with("HTTP/1.1 200"));
    // Without --base: the address the running daemon recorded when it started.
    let (ok, out, err) = cli(&dir, &["calendar", "url", "Smart Social Inclusion"]);
    assert!(ok && out.trim() == url, "{out}{err}");
    let body = &reply[reply.find("\r\n\r\n").expect("body") + 4..];
    let calendars: Vec<_> = ical::IcalParser::new(std::io::BufReader::new(body.as_bytes()))
        .collect::<Result<_, _>>()
        .expect("valid iCalendar");
    let events = &calendars[0].events;
    assert_eq!(events.len(), 1);
    let prop = |name: &str| {
        events[0]
            .properties
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(prop("SUMMARY"), "Study visit to Milan");
    assert_eq!(prop("DTSTART"), "20170223T100000Z", "11:00 in Rome");
    assert!(
        prop("SEQUENCE").parse::<u32>().is_ok_and(|n| n >= 3),
        "{}",
        prop("SEQUENCE")
    );

    // A wrong secret, another path: nothing.
    let wrong = url.replace(".ics", "0.ics");
    assert!(get(&wrong).starts_with("HTTP/1.1 404"));
    assert!(get(&format!("{base}/calendar/")).starts_with("HTTP/1.1 404"));
    // A new secret: the old URL stops working.
    let renewed = url_of(&["--new"]);
    assert_ne!(renewed, url);
    assert!(get(&url).starts_with("HTTP/1.1 404"));
    assert!(get(&renewed).starts_with("HTTP/1.1 200"));
    let (ok, out, err) = cli(&dir, &["calendar", "list", "--base", &base, "--json"]);
    assert!(ok && out.contains(&renewed), "{out}{err}");
    // Withdrawn: gone.
    let (ok, _, err) = cli(&dir, &["calendar", "revoke", "Smart Social Inclusion"]);
    assert!(ok, "{err}");
    assert!(get(&renewed).starts_with("HTTP/1.1 404"));
}

/// `--log-format json`: every line the daemon writes on stderr is one JSON object.
#[test]
fn the_daemon_logs_json_lines_when_asked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("milan");
    let (ok, _, err) = cli(&dir, &["init", "--city", "Milan"]);
    assert!(ok, "{err}");
    let mut child = Command::new(intercity_tests::intercity_bin())
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--log-format",
            "json",
            "node",
            "run",
            "--no-mdns",
            "--listen",
        ])
        .arg(format!("/ip4/127.0.0.1/tcp/{}", free_port()))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn daemon");
    intercity_tests::wait_for_socket(&dir, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    assert!(terminate(&mut child).success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["fields"].is_object())
    );
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("running; listening on"))),
        "{stderr}"
    );
}

/// A staff member on another machine: a staff key, added by the operator, reaches the node
/// over libp2p (`--node`); their changes name them on every node; operator-only commands are
/// refused; a removed key is refused at once.
#[test]
fn a_staff_member_works_from_another_machine_and_history_names_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("milan");
    let laptop = tmp.path().join("anna-laptop");
    let (ok, _, err) = cli(&dir, &["init", "--city", "Milan"]);
    assert!(ok, "{err}");
    let port = free_port();
    let _daemon = run_daemon(&dir, port);
    let key_file = laptop.join("staff.key");
    let key_file = key_file.to_str().expect("utf-8");
    let staff = |args: &[&str]| {
        let node = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", id_of(&dir));
        let mut all = vec!["--node", node.as_str(), "--staff-key", key_file];
        all.extend_from_slice(args);
        let out = intercity_tests::run_cli(&laptop, &all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = staff(&["staff", "key", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let anna: serde_json::Value = serde_json::from_str(&out).expect("json");
    let anna = anna["id"].as_str().expect("id").to_string();
    let (code2, out2, _) = staff(&["staff", "key", "--json"]);
    assert_eq!(code2, Some(0));
    assert!(out2.contains(&anna), "the key is kept: {out2}");
    // Not added yet: the node's gate refuses the key.
    let (code, _, err) = staff(&["practice", "list"]);
    assert_ne!(code, Some(0), "a stranger's key got in");
    assert!(err.contains("staff add"), "{err}");
    let (ok, _, err) = cli(&dir, &["staff", "add", "Anna Rossi", "--key", &anna]);
    assert!(ok, "{err}");
    let (code, out, err) = staff(&["practice", "add", "--title", "Bike lanes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = staff(&["practice", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Bike lanes"), "{out}");
    let (code, out, err) = staff(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Milan"), "{out}");
    // History, on the node, names her: in the table and in JSON.
    let (ok, out, err) = cli(&dir, &["history", "Bike lanes"]);
    assert!(ok, "{err}");
    assert!(out.contains("Milan (Anna Rossi)"), "{out}");
    let (ok, out, _) = cli(&dir, &["history", "Bike lanes", "--json"]);
    assert!(ok);
    let items: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(items[0]["by"], "Anna Rossi", "{items}");
    // The operator's own change names nobody.
    let (ok, _, err) = cli(&dir, &["practice", "add", "--title", "FabriQ"]);
    assert!(ok, "{err}");
    let (_, out, _) = cli(&dir, &["history", "FabriQ", "--json"]);
    assert!(!out.contains("\"by\""), "{out}");
    // Operator-only commands are refused, with why.
    let (code, _, err) = staff(&["staff", "list"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("operator"), "{err}");
    let (code, _, err) = staff(&["invite", "create", "--anyone"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("operator"), "{err}");
    // Removed: refused at once.
    let (ok, out, err) = cli(&dir, &["staff", "list"]);
    assert!(ok && out.contains("Anna Rossi"), "{out}{err}");
    let (ok, _, err) = cli(&dir, &["staff", "remove", "Anna Rossi"]);
    assert!(ok, "{err}");
    let (code, _, _) = staff(&["practice", "list"]);
    assert_ne!(code, Some(0), "a removed key still gets in");
}

/// Staff on the server: with `--staff-group`, a member of that group (checked by peer
/// credentials) uses the control socket as the staff member the city added for their Unix
/// user; one the city did not add is told why; one outside the group is refused. Needs root
/// (to run a client as another user); skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_the_staff_group_use_the_socket_as_the_staff_the_city_added() {
    use intercity_node::city::Access;
    use intercity_node::control::{ControlRequest, ops};
    use intercity_protocol::record::{Practice, Record};
    use std::os::unix::process::CommandExt;
    let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if uid.ok() != Some(0) {
        eprintln!("not root: cannot run a client as another user; skipped");
        return;
    }
    const STAFF_GID: u32 = 4242;
    const NOBODY: u32 = 65534;
    let mut cfg = intercity_tests::config(Duration::from_secs(1));
    cfg.staff_group = Some(STAFF_GID.to_string());
    let milan = intercity_tests::TestNode::spawn_config("Milan", 51, cfg).await;
    let socket = milan.city.dir().join("control.sock");
    // One client process per call, as the user and group given: each line is a request, each
    // answer a line (EOF when the daemon refused the connection).
    let ask = |uid: u32, gid: u32, lines: &[String]| -> String {
        let script = r#"use IO::Socket::UNIX; my $s = IO::Socket::UNIX->new(Peer => shift @ARGV) or die "connect: $!"; for my $l (@ARGV) { print $s "$l\n"; my $r = <$s>; print defined $r ? $r : "EOF\n"; }"#;
        let out = Command::new("/usr/bin/perl")
            .arg("-e")
            .arg(script)
            .arg(&socket)
            .args(lines)
            .uid(uid)
            .gid(gid)
            .output()
            .expect("perl");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let line = |req: ControlRequest| serde_json::to_string(&req).expect("json");
    let mut practice = Practice::new(milan.id().to_string(), "Bike lanes", "en");
    practice.city = "Milan".into();
    let create = line(
        ops::Create {
            record: Record::Practice(practice),
            message: "add a practice\nBy: The Mayor".into(),
        }
        .into(),
    );
    let profile = line(ops::Profile {}.into());
    let staff_list = line(ops::StaffList {}.into());

    // In the group, not added: told why.
    let out = ask(NOBODY, STAFF_GID, std::slice::from_ref(&profile));
    assert!(out.contains("staff add") && out.contains("nobody"), "{out}");
    // Outside the group: refused before anything is read.
    let out = ask(NOBODY, NOBODY, std::slice::from_ref(&profile));
    assert!(!out.contains("\"ok\""), "{out}");
    // Added: works, within the staff's operations, and the change names them.
    milan
        .city
        .staff_add("Anna Rossi", Access::User("nobody".into()))
        .expect("staff add");
    let out = ask(NOBODY, STAFF_GID, &[profile, create, staff_list]);
    let answers: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("{out}")))
        .collect();
    assert_eq!(answers[0]["ok"]["name"], "Milan", "{out}");
    let id: intercity_protocol::entry::DocId = answers[1]["ok"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .expect("id");
    assert!(
        answers[2]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("operator")),
        "{out}"
    );
    let history = milan.city.history(id).expect("history");
    assert_eq!(history[0].by.as_deref(), Some("Anna Rossi"));
    assert_eq!(
        history[0].message, "add a practice",
        "a forged By: line is dropped"
    );
    // The federation's record is a group record, but not staff work: an edit that makes a
    // stranger its chair is refused (the operator's `federation set` is the way).
    let federation = milan
        .city
        .federation_create("Eurocities", "Cities working together")
        .expect("federation");
    let Ok(Record::Group(mut record)) = milan.city.record(federation) else {
        panic!("the federation's record")
    };
    record.members.insert(
        intercity_tests::key(99).id().to_string(),
        intercity_protocol::record::Member {
            name: "Mallory".into(),
            role: intercity_protocol::record::Role::Chair,
        },
    );
    let edit = line(
        ops::Edit {
            id: federation,
            record: Record::Group(record),
            message: "add a chair".into(),
            base: Vec::new(),
        }
        .into(),
    );
    let out = ask(NOBODY, STAFF_GID, &[edit]);
    assert!(out.contains("operator"), "{out}");
    let Ok(Record::Group(record)) = milan.city.record(federation) else {
        panic!("the federation's record")
    };
    assert_eq!(
        record.members.len(),
        1,
        "a staff member changed the federation"
    );
    // Removed: refused at the next request.
    milan.city.staff_remove("Anna Rossi").expect("remove");
    let profile = line(ops::Profile {}.into());
    let out = ask(NOBODY, STAFF_GID, &[profile]);
    assert!(out.contains("staff add"), "{out}");
}
