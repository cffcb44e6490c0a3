//! A real OpenLDAP `slapd` for the directory tests (issue 16): a generated
//! slapd.conf and TLS certificate (rcgen), free 127.0.0.1 ports, the test
//! people and groups loaded with `ldapadd`, killed by PID when dropped.
//!
//! Self-contained (std, tempfile, rcgen) so that it can move into a shared
//! test kit; the e2e tests include this very file.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The directory's suffix.
pub const SUFFIX: &str = "dc=example,dc=org";
/// Where people are.
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
/// Where groups are.
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";
/// The service account TPA searches with.
pub const SERVICE_DN: &str = "cn=tpa-service,dc=example,dc=org";
/// Its password.
pub const SERVICE_PASSWORD: &str = "service-secret-1";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PASSWORD: &str = "admin-secret-1";

/// The password of test user `name` in the directory.
pub fn password(name: &str) -> String {
    format!("{name}-directory-password")
}

/// A PEM CA and the key that signs with it.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A fresh CA.
    pub fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost: (cert PEM, key PEM).
    pub fn server_cert(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, &self.pem).unwrap();
    }
}

/// A running slapd with the test data.
pub struct Slapd {
    /// Holds the configuration, database, certificates and log.
    pub dir: tempfile::TempDir,
    /// The CA that signed slapd's certificate.
    pub ca: TestCa,
    /// `dir/ca.pem`.
    pub ca_file: PathBuf,
    /// The plain port (StartTLS available).
    pub port: u16,
    /// The ldaps port.
    pub tls_port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn require(tool: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(tool);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "{tool} is missing: the directory tests need OpenLDAP (apt-get install -y slapd ldap-utils; ./scripts/test installs them)"
    );
}

impl Slapd {
    /// Starts slapd on free ports with the test people and groups.
    pub fn start() -> Self {
        let slapd = require("slapd");
        require("ldapadd");
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("tpa test directory CA");
        let (cert, key) = ca.server_cert();
        let ca_file = dir.path().join("ca.pem");
        ca.write(&ca_file);
        std::fs::write(dir.path().join("server.pem"), cert).unwrap();
        std::fs::write(dir.path().join("server.key"), key).unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("slapd.conf"), slapd_conf(dir.path())).unwrap();
        let mut last_error = String::new();
        for _ in 0..5 {
            let (port, tls_port) = (free_port(), free_port());
            let urls = format!("ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/");
            let log_path = dir.path().join("slapd.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(&slapd)
                .args(["-d", "0", "-h", &urls, "-f"])
                .arg(dir.path().join("slapd.conf"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            if wait_ready(&mut child, port, tls_port) {
                let server = Self {
                    dir,
                    ca,
                    ca_file,
                    port,
                    tls_port,
                    child: Some(child),
                };
                server.load();
                return server;
            }
            let _ = child.kill();
            let _ = child.wait();
            last_error = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("slapd did not start: {last_error}");
    }

    /// slapd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// `ldap://127.0.0.1:PORT` (StartTLS, or plain text for the harness).
    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    fn tool(&self, tool: &str, extra: &[&str], ldif: &str) {
        let mut child = Command::new(require(tool))
            .args([
                "-x",
                "-H",
                &self.ldap_url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ldapadd` as the directory administrator (ManageDsaIT, so referral
    /// objects are added as entries).
    pub fn add(&self, ldif: &str) {
        self.tool("ldapadd", &["-M"], ldif);
    }

    /// `ldapmodify` as the directory administrator.
    pub fn modify(&self, ldif: &str) {
        self.tool("ldapmodify", &[], ldif);
    }

    fn load(&self) {
        self.add(&base_ldif());
    }

    /// Kills slapd (by PID) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes the service account's password to a 0600 file in `dir`.
    pub fn service_password_file(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join("ldap-service.password");
        std::fs::write(&path, SERVICE_PASSWORD).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}

/// Whether slapd answers on both ports within 20 s (false if it exited).
fn wait_ready(child: &mut Child, port: u16, tls_port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
        if up(port) && up(tls_port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn slapd_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
# Active Directory's account flags, so disabled and expired accounts can be tested.
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.55555.1.1 NAME 'tpaTestAccount' AUXILIARY MAY ( userAccountControl ) )
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {d}/db
# memberOf on users and groups, for group_membership = "member_of".
overlay memberof
"#
    )
}

/// One person entry.
pub fn person(uid: &str, ou: &str, extra: &str) -> String {
    let name = format!("{}{}", uid[..1].to_uppercase(), &uid[1..]);
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!("{extra}\n")
    };
    format!(
        "dn: uid={uid},{ou}\nobjectClass: inetOrgPerson\nobjectClass: tpaTestAccount\nuid: {uid}\ncn: {name} Example\nsn: Example\nmail: {uid}@example.org\nuserPassword: {}\n{extra}\n",
        password(uid)
    )
}

fn group(cn: &str, members: &[&str]) -> String {
    // groupOfNames needs a member: a placeholder keeps a group valid when
    // a test removes its last person.
    let mut out = format!(
        "dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\nmember: cn=placeholder,{SUFFIX}\n"
    );
    for m in members {
        out.push_str(&format!("member: {m}\n"));
    }
    out.push('\n');
    out
}

fn uid(name: &str) -> String {
    format!("uid={name},{PEOPLE}")
}

/// alice in engineers, bob in sre-leads, carol in managers through
/// mgmt-staff, dave in auditors, eve in none, frank disabled, grace with an
/// expired password, two entries with uid twin, and a referral.
fn base_ldif() -> String {
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=extra,{PEOPLE}\nobjectClass: organizationalUnit\nou: extra\n\n\
         dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: {SERVICE_DN}\nobjectClass: person\ncn: tpa-service\nsn: service\nuserPassword: {SERVICE_PASSWORD}\n\n\
         dn: ou=elsewhere,{SUFFIX}\nobjectClass: referral\nobjectClass: extensibleObject\nou: elsewhere\nref: ldap://127.0.0.1:1/ou=people,dc=other,dc=org\n\n"
    );
    for name in ["alice", "bob", "carol", "dave", "eve"] {
        ldif.push_str(&person(name, PEOPLE, ""));
    }
    ldif.push_str(&person("frank", PEOPLE, "userAccountControl: 514"));
    // NORMAL_ACCOUNT | PASSWORD_EXPIRED.
    ldif.push_str(&person("grace", PEOPLE, "userAccountControl: 8389120"));
    ldif.push_str(&person("twin", PEOPLE, ""));
    ldif.push_str(&person("twin", &format!("ou=extra,{PEOPLE}"), ""));
    ldif.push_str(&group("engineers", &[&uid("alice")]));
    ldif.push_str(&group("sre-leads", &[&uid("bob")]));
    ldif.push_str(&group("mgmt-staff", &[&uid("carol")]));
    ldif.push_str(&group("managers", &[&format!("cn=mgmt-staff,{GROUPS}")]));
    ldif.push_str(&group("auditors", &[&uid("dave")]));
    ldif
}

/// The `[[ldap]]` block of a CA using this directory over ldaps, with the
/// service account's password file in `dir`, then `extra` keys (a
/// `timeout` there replaces the default 3 s).
pub fn connector_toml(server: &Slapd, dir: &Path, extra: &str) -> String {
    let password_file = Slapd::service_password_file(dir);
    let timeout = if extra.contains("timeout =") {
        ""
    } else {
        "timeout = \"3s\"\n"
    };
    format!(
        "\n[[ldap]]\nname = \"corp\"\nurl = \"{}\"\nca_file = \"{}\"\nbind_dn = \"{SERVICE_DN}\"\nbind_password_file = \"{}\"\nuser_base = \"{PEOPLE}\"\ngroup_base = \"{GROUPS}\"\ntrust_group_names = true\n{timeout}{extra}\n",
        server.ldaps_url(),
        server.ca_file.display(),
        password_file.display(),
    )
}
