//! What needs root on this machine: a network namespace of its own,
//! switching to another user, and a privileged port to send from. Behind
//! the `host-tests` feature (see Cargo.toml), which ./scripts/test.sh turns
//! on and runs as root.

#![cfg(target_os = "linux")]

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::{Server, udp_client};

#[test]
fn the_classic_python_tutorial_client_gets_its_bytes_back_from_the_built_in_default() {
    assert!(
        !std::path::Path::new("/etc/echo-server/config.toml").exists(),
        "this test runs the server without a config file; move /etc/echo-server/config.toml away"
    );
    // The default port in a network namespace of its own, where a server
    // a user left running on it (the README's first command) cannot be.
    let server = common::Launcher::built_in()
        .wrapped_in(&[
            "unshare",
            "--net",
            "sh",
            "-c",
            "ip link set lo up && exec \"$@\"",
            "sh",
        ])
        .start();
    assert_eq!(server.addr().to_string(), "127.0.0.1:65432");
    let client = r#"
import socket
HOST = "127.0.0.1"
PORT = 65432
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.connect((HOST, PORT))
    s.sendall(b"Hello, world")
    data = s.recv(1024)
print(f"Received {data!r}")
"#;
    // unshare and sh exec the server: its pid names the namespace.
    let output = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", server.pid()))
        .args(["python3", "-c"])
        .arg(client)
        .output()
        .expect("python3 is installed by scripts/test.sh");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Received b'Hello, world'\n"
    );
}

#[test]
fn a_privileged_port_without_the_capability_exits_77_with_a_hint() {
    // An unprivileged user in a network namespace of its own, where the
    // kernel's default (ports below 1024 are privileged) holds whatever
    // this machine's sysctl says.
    let script = format!(
        "ip link set lo up && exec setpriv --reuid=65534 --regid=65534 --clear-groups {} --port 7",
        common::SERVER
    );
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--net", "sh", "-c", &script])
        .env_remove("ECHO_SERVER_CONFIG");
    let finished = common::finish_with_patience(command, b"");
    let err = finished.stderr;
    assert_eq!(finished.code, 77, "{err}");
    assert!(
        err.contains("cannot listen on TCP 127.0.0.1:7: permission denied"),
        "{err}"
    );
    assert!(err.contains("CAP_NET_BIND_SERVICE"), "{err}");
}

#[test]
fn datagrams_from_answering_service_ports_are_dropped() {
    let server = Server::start("udp = true\n");
    // Any of echo, daytime, qotd, chargen or time that is free on this host.
    let socket = [7u16, 13, 17, 19, 37]
        .iter()
        .find_map(|port| UdpSocket::bind(("127.0.0.1", *port)).ok())
        .expect("one of the UDP ports 7, 13, 17, 19, 37 is free (the tests run as root)");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    socket.send_to(b"loop me", server.udp[0]).unwrap();
    server.log.wait_for("answering service");
    let mut buf = [0u8; 16];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "a datagram from a reflecting port was answered"
    );
    // Ordinary sources are still answered.
    let ordinary = udp_client();
    ordinary.send_to(b"hello", server.udp[0]).unwrap();
    let (len, _) = ordinary.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..len], b"hello");
}
