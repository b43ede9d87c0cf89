//! TLS peers for the tests: a test PKI made with the `openssl` CLI for
//! each run, and foreign TLS echo servers (socat, stunnel) to check
//! against. Shared by tests/tls.rs, tests/tls_client.rs and the Windows
//! client's tests, so all use the same certificates, made the same way.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Finished, Launcher, PATIENCE, Server, TestDir, finish_with_patience};

/// How long a renewed certificate is valid (`Pki::renew`).
const RENEWED_DAYS: &str = "90";

/// A test PKI, made with `openssl` in a directory of its own: the CA `ca`
/// with server certificates for localhost (`server`; `server2` for
/// rotation; `expired`, expired yesterday), one for another name
/// (`wrong`) and a client certificate (`client`); another CA, `other-ca`,
/// with a client certificate of its own (`stranger`); and `other.key`, a
/// key that belongs to no certificate. Each certificate's subject is
/// `CN=NAME`.
pub struct Pki {
    pub dir: TestDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: TestDir::new(),
        };
        pki.ca("ca");
        pki.ca("other-ca");
        let server_names = "subjectAltName=DNS:localhost,IP:127.0.0.1";
        pki.issue("ca", "server", server_names, "30");
        pki.issue("ca", "server2", server_names, "60");
        pki.issue("ca", "expired", server_names, "-1");
        pki.issue("ca", "wrong", "subjectAltName=DNS:wrong.example", "30");
        let client = "extendedKeyUsage=clientAuth";
        pki.issue("ca", "client", client, "30");
        pki.issue("other-ca", "stranger", client, "30");
        pki.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "other.key",
        ]);
        pki
    }

    /// A self-signed CA: `NAME.pem` and `NAME.key`.
    fn ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "365",
            "-subj",
            &format!("/CN=echo test {name}"),
        ]);
    }

    /// `NAME.pem` and `NAME.key`, signed by the CA `ca` as a version 3
    /// certificate (webpki refuses version 1) with `extension`, valid from
    /// now for `days` (-1: expired yesterday).
    fn issue(&self, ca: &str, name: &str, extension: &str, days: &str) {
        let extensions = self.dir.write(
            &format!("{name}.ext"),
            &format!("basicConstraints=CA:FALSE\n{extension}\n"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            days,
            "-extfile",
            extensions.to_str().unwrap(),
        ]);
    }

    /// `RENEWED.pem`: the certificate `name` renewed for the same key, as a
    /// CA renews one for the same request, valid from now for
    /// `RENEWED_DAYS`: longer than any certificate `new` issues, so that the
    /// notAfter a server presents tells the renewed one from all of them
    /// (with `server2`'s 60 days, both could end on the same second).
    pub fn renew(&self, name: &str, renewed: &str) {
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{renewed}.pem"),
            "-days",
            RENEWED_DAYS,
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }

    fn openssl(&self, args: &[&str]) -> Finished {
        let mut command = Command::new("openssl");
        command.args(args).current_dir(self.dir.path());
        let run = finish_with_patience(command, b"");
        assert_eq!(run.code, 0, "openssl {args:?}: {}", run.stderr);
        run
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.file(name).to_str().unwrap().to_string()
    }

    /// The certificate's notAfter as `openssl x509` reads it, in RFC 3339.
    pub fn not_after(&self, name: &str) -> String {
        let run = self.openssl(&[
            "x509",
            "-in",
            &format!("{name}.pem"),
            "-noout",
            "-enddate",
            "-dateopt",
            "iso_8601",
        ]);
        run.stdout()
            .trim()
            .strip_prefix("notAfter=")
            .expect("openssl prints notAfter=")
            .replace(' ', "T")
    }
}

/// A host's configuration with a plain listener on `port` and a TLS one on
/// `tls_port`, serving the certificate and key where echo-deploy and the
/// Ansible role install them.
pub fn installed_tls_config(port: u16, tls_port: u16) -> String {
    format!(
        "[server]\nport = {port}\n[tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\n\
         certificate = \"/etc/echo-server/tls/server.pem\"\n\
         key = \"/etc/echo-server/tls/server.key\"\n"
    )
}

/// A `[tls]` section on a port of its own, with `extra` lines.
pub fn section(pki: &Pki, certificate: &str, key: &str, extra: &str) -> String {
    format!(
        "[tls]\nlisten = [\"127.0.0.1:0\"]\ncertificate = {:?}\nkey = {:?}\n{extra}",
        pki.file(certificate),
        pki.file(key)
    )
}

/// A server with a plain and a TLS listener, and the TLS listener's address.
pub fn start(config: &str) -> (Server, SocketAddr) {
    let server = Launcher::new(&format!("[server]\nport = 0\n{config}")).start();
    let started = server.log.wait_for("echo-server started");
    let tls = started
        .split_whitespace()
        .find_map(|word| word.strip_prefix("tls://"))
        .unwrap_or_else(|| panic!("no TLS address in {started:?}"))
        .parse()
        .unwrap();
    (server, tls)
}

/// A rustls client that trusts the test CA.
pub fn rustls_client(pki: &Pki) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.file("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TLS connection to `addr`, its handshake complete and one echo done.
pub fn rustls_connect(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    stream.write_all(b"hi").unwrap();
    let mut echoed = [0; 2];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"hi");
    stream
}

/// The notAfter of the certificate a TLS echo at `target` serves to a new
/// connection, as `echo-client check --tls` reports it (trusting the CA).
pub fn served_not_after(pki: &Pki, target: &str) -> String {
    let mut check = Command::new(super::CLIENT);
    check.args([
        "check",
        target,
        "--tls",
        "--ca",
        &pki.arg("ca.pem"),
        "--json",
    ]);
    let checked = finish_with_patience(check, b"");
    assert_eq!(checked.code, 0, "{}{}", checked.stdout(), checked.stderr);
    let report: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    report["targets"][0]["tls"]["certificate_not_after"]
        .as_str()
        .unwrap_or_else(|| panic!("no certificate in {report}"))
        .to_string()
}

/// A foreign server, killed with everything it forked when dropped (in a
/// process group of its own, without the test's standard output).
pub struct Foreign {
    child: Child,
    pub addr: SocketAddr,
}

impl Foreign {
    fn start(command: &mut Command, addr: SocketAddr) -> Foreign {
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?} (installed by scripts/test.sh): {e}"));
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "{command:?} did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Foreign { child, addr }
    }

    /// socat's TLS echo with the certificate `name`; `verify` adds socat's
    /// options for client certificates (`verify=0`: none asked for).
    pub fn socat(pki: &Pki, name: &str, verify: &str) -> Foreign {
        let addr = free_addr();
        Foreign::start(
            Command::new("socat").args([
                &format!(
                    "OPENSSL-LISTEN:{},bind=127.0.0.1,fork,reuseaddr,cert={},key={},{verify}",
                    addr.port(),
                    pki.arg(&format!("{name}.pem")),
                    pki.arg(&format!("{name}.key")),
                ),
                "PIPE",
            ]),
            addr,
        )
    }

    /// stunnel with the server certificate in front of `backend`, a plain echo.
    pub fn stunnel(pki: &Pki, backend: SocketAddr) -> Foreign {
        let addr = free_addr();
        let config = pki.dir.write(
            "stunnel.conf",
            &format!(
                "foreground = yes\npid =\n[echo]\naccept = {addr}\nconnect = {backend}\n\
                 cert = {}\nkey = {}\n",
                pki.arg("server.pem"),
                pki.arg("server.key")
            ),
        );
        Foreign::start(Command::new("stunnel4").arg(config), addr)
    }

    pub fn target(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, super::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
