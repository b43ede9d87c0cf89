//! `echo-client check` read by real monitoring systems, as Debian packages
//! them: `promtool` lints the textfile, node_exporter's textfile collector
//! serves it, a Prometheus server scrapes it and answers queries about it;
//! a Nagios 4 core runs `check --format nagios` as its plugin against a
//! healthy, a slow and a dead target and records OK, WARNING and CRITICAL.
//! `scripts/test.sh` installs them; a missing one fails these tests.

#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{CLIENT, PATIENCE, Server, TestDir, finish_with_patience, free_port};
use serde_json::Value;

/// A foreign server the test started, stopped when the test ends.
struct Foreign {
    child: Child,
    name: &'static str,
}

impl Foreign {
    fn start(name: &'static str, program: &str, args: &[&str], log: &Path) -> Foreign {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program} (scripts/test.sh installs it): {e}")
            });
        Foreign { child, name }
    }

    fn assert_running(&mut self, log: &Path) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}):\n{}",
                self.name,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `attempt` until it returns something, within the harness's patience.
fn eventually<T>(what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = attempt() {
            return found;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The body of a plain HTTP/1.0 GET, or `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    (status.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}

/// A closed loopback port: bound, then let go.
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn check(args: &[&str]) -> common::Finished {
    let mut command = Command::new(CLIENT);
    command.arg("check").args(args);
    finish_with_patience(command, b"")
}

#[test]
fn the_documented_alerting_rules_pass_promtool() {
    let guide = include_str!("../docs/MONITORING.md");
    let rules: String = guide
        .lines()
        .skip_while(|line| *line != "groups:")
        .take_while(|line| *line != "```")
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(
        rules.contains("alert: EchoPathDown"),
        "no rules in MONITORING.md"
    );
    let dir = TestDir::new();
    let file = dir.write("echo.rules.yml", &rules);
    let lint = Command::new("promtool")
        .args(["check", "rules", file.to_str().unwrap()])
        .output()
        .expect("promtool (scripts/test.sh installs prometheus)");
    assert!(
        lint.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}

#[test]
fn prometheus_reads_the_textfile_through_node_exporter() {
    let server = Server::start("");
    let healthy = server.addr().to_string();
    let dead = closed_port().to_string();
    let dir = TestDir::new();
    let textfiles = dir.path().join("textfiles");
    std::fs::create_dir(&textfiles).unwrap();
    let file = textfiles.join("echo.prom");
    let run = check(&[
        "--format",
        "textfile",
        "-o",
        file.to_str().unwrap(),
        "-n",
        "3",
        "-i",
        "10ms",
        &healthy,
        &dead,
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);

    // A second job's file in the same directory, as a cron line per
    // inventory would write: node_exporter must take both.
    let second_dead = closed_port().to_string();
    let second = textfiles.join("second.prom");
    let run = check(&[
        "--format",
        "textfile",
        "-o",
        second.to_str().unwrap(),
        &second_dead,
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);

    let lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool (scripts/test.sh installs prometheus)");
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    let exporter_port = free_port();
    let exporter_log = dir.path().join("node_exporter.log");
    let mut exporter = Foreign::start(
        "node_exporter",
        "prometheus-node-exporter",
        &[
            &format!("--web.listen-address=127.0.0.1:{exporter_port}"),
            "--collector.disable-defaults",
            "--collector.textfile",
            &format!("--collector.textfile.directory={}", textfiles.display()),
        ],
        &exporter_log,
    );
    let prometheus_port = free_port();
    let config = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    \
             static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
    );
    let prometheus_log = dir.path().join("prometheus.log");
    let mut prometheus = Foreign::start(
        "prometheus",
        "prometheus",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            &format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
        &prometheus_log,
    );

    // The value of `query` for each target, once Prometheus has all three.
    let mut query = |query: &str| -> Vec<(String, f64)> {
        eventually(query, || {
            exporter.assert_running(&exporter_log);
            prometheus.assert_running(&prometheus_log);
            let body = http_get(prometheus_port, &format!("/api/v1/query?query={query}"))?;
            let answer: Value = serde_json::from_str(&body).unwrap();
            let series = answer["data"]["result"].as_array()?.clone();
            (series.len() == 3).then(|| {
                let mut values: Vec<(String, f64)> = series
                    .iter()
                    .map(|s| {
                        (
                            s["metric"]["target"].as_str().unwrap().to_string(),
                            s["value"][1].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect();
                values.sort_by(|a, b| a.0.cmp(&b.0));
                values
            })
        })
    };
    let by_target = |values: Vec<(String, f64)>, target: &str| {
        values
            .into_iter()
            .find(|(t, _)| t == target)
            .unwrap_or_else(|| panic!("no series for {target}"))
            .1
    };
    let exporter_metrics = eventually("node_exporter's metrics", || {
        http_get(exporter_port, "/metrics")
    });
    assert!(
        exporter_metrics
            .lines()
            .any(|line| line == "node_textfile_scrape_error 0"),
        "node_exporter could not read the files:\n{}",
        std::fs::read_to_string(&exporter_log).unwrap_or_default()
    );
    let up = query("echo_check_up");
    assert_eq!(by_target(up.clone(), &healthy), 1.0, "{up:?}");
    assert_eq!(by_target(up.clone(), &dead), 0.0, "{up:?}");
    assert_eq!(by_target(up.clone(), &second_dead), 0.0, "{up:?}");
    // Each file's runs have their own time, so neither hides the other's.
    let last_runs = query("echo_check_last_run_timestamp_seconds");
    assert!(
        last_runs.iter().all(|(_, time)| *time > 1e9),
        "{last_runs:?}"
    );
    let loss = query("echo_check_loss_ratio");
    assert_eq!(by_target(loss.clone(), &healthy), 0.0, "{loss:?}");
    assert_eq!(by_target(loss.clone(), &dead), 1.0, "{loss:?}");
    let answered = query("echo_check_answered");
    assert_eq!(by_target(answered, &healthy), 3.0);
    let exit_codes = query("echo_check_exit_code");
    assert_eq!(by_target(exit_codes, &dead), 2.0);
    // Only the target that answered has round trips.
    let rtt = eventually("a round trip", || {
        let body = http_get(
            prometheus_port,
            "/api/v1/query?query=echo_check_rtt_avg_seconds",
        )?;
        let answer: Value = serde_json::from_str(&body).unwrap();
        let series = answer["data"]["result"].as_array()?.clone();
        (!series.is_empty()).then_some(series)
    });
    assert_eq!(rtt.len(), 1, "{rtt:?}");
    assert_eq!(rtt[0]["metric"]["target"], healthy.as_str());
    let seconds: f64 = rtt[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(seconds > 0.0 && seconds < 5.0, "{seconds}");
}

/// A relay in front of `upstream` that holds what the client sends for
/// `delay` before passing it on: a slow path, on real sockets.
fn delaying_relay(upstream: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(upstream) else {
                    return;
                };
                let (mut from_server, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Write);
                });
                let (mut from_client, mut to_server) = (client, server);
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = from_client.read(&mut chunk) {
                    std::thread::sleep(delay);
                    if to_server.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                }
                let _ = to_server.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// The `servicestatus` blocks of a Nagios status file, by service name.
fn service_status(status_file: &Path) -> Vec<(String, Vec<(String, String)>)> {
    let text = std::fs::read_to_string(status_file).unwrap_or_default();
    text.split("servicestatus {")
        .skip(1)
        .map(|block| {
            let fields: Vec<(String, String)> = block
                .lines()
                .take_while(|line| line.trim() != "}")
                .filter_map(|line| line.trim().split_once('='))
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect();
            let name = fields
                .iter()
                .find(|(key, _)| key == "service_description")
                .map(|(_, value)| value.clone())
                .unwrap_or_default();
            (name, fields)
        })
        .collect()
}

#[test]
fn a_nagios_core_runs_check_and_records_ok_warning_and_critical() {
    let server = Server::start("");
    let targets = [
        ("healthy", server.addr()),
        (
            "slow",
            delaying_relay(server.addr(), Duration::from_millis(400)),
        ),
        ("dead", closed_port()),
    ];
    let dir = TestDir::new();
    let path = dir.path().display().to_string();
    std::fs::create_dir(dir.path().join("checkresults")).unwrap();
    let services: String = targets
        .iter()
        .map(|(name, addr)| {
            format!(
                "define service {{\n  host_name loopback\n  service_description {name}\n  \
                 check_command echo_check!{addr}\n  max_check_attempts 1\n  check_interval 1\n  \
                 retry_interval 1\n  check_period always\n  contacts nobody\n  \
                 notification_period always\n}}\n"
            )
        })
        .collect();
    let days: String = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ]
    .iter()
    .map(|day| format!("  {day} 00:00-24:00\n"))
    .collect();
    // The plugin as an operator would define it: three probes, WARNING past
    // 200 ms or 20% lost, CRITICAL past 2 s or 60% lost.
    let objects = dir.write(
        "objects.cfg",
        &format!(
            "define timeperiod {{\n  timeperiod_name always\n  alias always\n{days}}}\n\
             define command {{\n  command_name echo_check\n  command_line {CLIENT} check \
             --format nagios -n 3 -i 100ms -t 3s -w 200,20% -c 2000,60% $ARG1$\n}}\n\
             define command {{\n  command_name nothing\n  command_line /bin/true\n}}\n\
             define contact {{\n  contact_name nobody\n  host_notifications_enabled 0\n  \
             service_notifications_enabled 0\n  host_notification_period always\n  \
             service_notification_period always\n  host_notification_options n\n  \
             service_notification_options n\n  host_notification_commands nothing\n  \
             service_notification_commands nothing\n}}\n\
             define host {{\n  host_name loopback\n  address 127.0.0.1\n  \
             check_command nothing\n  max_check_attempts 1\n  check_period always\n  \
             contacts nobody\n  notification_period always\n}}\n{services}"
        ),
    );
    // Checks every second (interval_length=1), all at once, nothing kept
    // between runs, everything in the test's directory.
    let config = dir.write(
        "nagios.cfg",
        &format!(
            "cfg_file={objects}\nlog_file={path}/nagios.log\nstatus_file={path}/status.dat\n\
             status_update_interval=1\nobject_cache_file={path}/objects.cache\n\
             precached_object_file={path}/objects.precache\ntemp_file={path}/nagios.tmp\n\
             temp_path={path}\nlock_file={path}/nagios.lock\n\
             check_result_path={path}/checkresults\ncheck_external_commands=0\n\
             retain_state_information=0\nstate_retention_file={path}/retention.dat\n\
             query_socket={path}/query.sock\nnagios_user=root\nnagios_group=root\n\
             interval_length=1\nmax_service_check_spread=1\nmax_host_check_spread=1\n\
             service_inter_check_delay_method=n\nhost_inter_check_delay_method=n\n\
             check_result_reaper_frequency=1\nuse_syslog=0\nenable_notifications=0\n",
            objects = objects.display()
        ),
    );
    let verify = Command::new("nagios4")
        .args(["-v", config.to_str().unwrap()])
        .output()
        .expect("nagios4 (scripts/test.sh installs nagios4-core)");
    assert!(
        verify.status.success(),
        "nagios4 -v: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let log = dir.path().join("nagios.out");
    let mut nagios = Foreign::start("nagios4", "nagios4", &[config.to_str().unwrap()], &log);

    let expected = [
        ("healthy", "0", "OK"),
        ("slow", "1", "WARNING"),
        ("dead", "2", "CRITICAL"),
    ];
    let statuses = eventually("Nagios to check all three services", || {
        nagios.assert_running(&log);
        let statuses = service_status(&dir.path().join("status.dat"));
        let checked = statuses.iter().filter(|(_, fields)| {
            fields
                .iter()
                .any(|(k, v)| k == "has_been_checked" && v == "1")
        });
        (checked.count() == expected.len()).then_some(statuses)
    });
    for (name, state, label) in expected {
        let (_, fields) = statuses.iter().find(|(n, _)| n == name).unwrap();
        let field = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        let (output, performance) = (field("plugin_output"), field("performance_data"));
        assert_eq!(field("current_state"), state, "{name}: {output}");
        assert!(
            output.starts_with(&format!("ECHO {label} - ")),
            "{name}: {output}"
        );
        assert!(performance.starts_with("rtt="), "{name}: {performance}");
        assert!(
            performance.contains(";200;2000;0; loss="),
            "{name}: {performance}"
        );
        assert!(
            performance.ends_with(";20;60;0;100"),
            "{name}: {performance}"
        );
    }
}
