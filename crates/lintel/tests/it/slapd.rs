//! A real OpenLDAP `slapd` for the LDAP tests (the badge lookup and the people sync), on
//! an ephemeral loopback port with its own configuration and data, and what the tests
//! need to read and change it.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lintel_connectors::ldap::LdapServer;

use crate::harness::write_file;

pub const SUFFIX: &str = "dc=example,dc=org";
pub const BIND_DN: &str = "cn=lintel,ou=services,dc=example,dc=org";
pub const BIND_PASSWORD: &str = "bind-S3cret-for-lintel";
/// An account whose searches stop at [`SIZE_LIMIT`] entries, paged or not (its password
/// is [`BIND_PASSWORD`]): a directory that stops answering midway.
pub const LIMITED_DN: &str = "cn=limited,ou=services,dc=example,dc=org";
/// The directory's own administrator, with which tests change entries while it runs.
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PASSWORD: &str = "admin-S3cret-for-tests";
/// One search answers at most this many entries; a paged search any number (as Active
/// Directory's MaxPageSize does).
pub const SIZE_LIMIT: usize = 20;

/// What Active Directory has and OpenLDAP's schemas lack: `userAccountControl` (its bit
/// 0x2 disables the account) and `memberOf`, on an auxiliary class (OIDs in OpenLDAP's
/// experimental arc).
const AD_SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.4203.666.11.99.1 NAME 'userAccountControl' \
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.4203.666.11.99.2 NAME 'memberOf' \
  EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )
objectclass ( 1.3.6.1.4.1.4203.666.11.99.3 NAME 'adAccount' AUXILIARY \
  MAY ( userAccountControl $ memberOf ) )
";

/// The top of the tree: the suffix, lintel's service accounts (only they may read), and
/// `ou=people`.
pub fn directory_top() -> String {
    [
        format!("dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"),
        format!("dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n"),
        format!(
            "dn: {BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: lintel\n\
             userPassword: {BIND_PASSWORD}\n\n"
        ),
        format!(
            "dn: {LIMITED_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: limited\n\
             userPassword: {BIND_PASSWORD}\n\n"
        ),
        format!("dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n"),
    ]
    .concat()
}

/// lintel's account on the test directory.
pub fn server(url: &str, starttls: bool, bind_password: &str, ca_file: Option<PathBuf>) -> LdapServer {
    LdapServer {
        url: url.to_owned(),
        starttls,
        bind_dn: Some(BIND_DN.into()),
        bind_password: Some(bind_password.into()),
        ca_file,
    }
}

fn slapd_binary() -> PathBuf {
    ["/usr/sbin/slapd", "/usr/local/sbin/slapd", "/usr/local/libexec/slapd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "OpenLDAP's slapd is not installed, and the LDAP lookup tests need a real one: \
                 run scripts/test (it installs Debian's slapd) or `apt-get install slapd ldap-utils`"
            )
        })
}

/// A real slapd on an ephemeral loopback port, with its own config and database in a
/// temporary directory; killed when dropped.
pub struct Slapd {
    pub url: String,
    pub port: u16,
    /// `ldaps://127.0.0.1:PORT` when started with a certificate.
    pub ldaps_url: Option<String>,
    child: Child,
    dir: PathBuf,
}

/// A certificate for 127.0.0.1 and its key, in PEM files.
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Slapd {
    pub fn start(ldif: &str) -> Self {
        Self::start_with(ldif, None)
    }

    /// Also listens for ldaps:// and offers StartTLS, with this certificate.
    pub fn start_with(ldif: &str, tls: Option<&Certificate>) -> Self {
        let slapd = slapd_binary();
        let dir = std::env::temp_dir().join(format!("lintel-slapd-{}-{}", std::process::id(), next_instance()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("db")).expect("slapd dir");
        let conf = write_file(
            &dir,
            "slapd.conf",
            &format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 include {schema}\n\
                 modulepath /usr/lib/ldap\n\
                 moduleload back_mdb\n\
                 pidfile {dir}/slapd.pid\n\
                 sizelimit size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.prtotal=unlimited\n\
                 database mdb\n\
                 maxsize 10485760\n\
                 suffix \"{SUFFIX}\"\n\
                 rootdn \"{ADMIN_DN}\"\n\
                 rootpw {ADMIN_PASSWORD}\n\
                 directory {dir}/db\n\
                 access to attrs=userPassword by anonymous auth by * none\n\
                 limits dn.exact=\"{LIMITED_DN}\" size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} \
                 size.prtotal={SIZE_LIMIT}\n\
                 access to * by dn.exact=\"{BIND_DN}\" read by dn.exact=\"{LIMITED_DN}\" read by * none\n\
                 {tls}",
                dir = dir.display(),
                schema = write_file(&dir, "ad.schema", AD_SCHEMA).display(),
                tls = tls
                    .map(|t| format!(
                        "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                        t.cert.display(),
                        t.key.display()
                    ))
                    .unwrap_or_default(),
            ),
        );
        let data = write_file(&dir, "data.ldif", ldif);
        // Loaded offline, before slapd serves: no admin bind needed.
        let out = Command::new(slapd.with_file_name("slapadd"))
            .args(["-f", path(&conf), "-l", path(&data)])
            .output()
            .expect("slapadd runs");
        assert!(out.status.success(), "slapadd: {}", String::from_utf8_lossy(&out.stderr));
        for _ in 0..5 {
            let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let port = free_port();
            let ldaps_url = tls.map(|_| format!("ldaps://127.0.0.1:{}", free_port()));
            let listeners = match &ldaps_url {
                Some(ldaps) => format!("ldap://127.0.0.1:{port}/ {ldaps}/"),
                None => format!("ldap://127.0.0.1:{port}/"),
            };
            let mut child = Command::new(&slapd)
                .args(["-f", path(&conf), "-h", &listeners, "-d", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("slapd starts");
            // Ready once it wrote its pid, which it does after opening its listeners: a port
            // that answers might be another process's that took it meanwhile.
            let pidfile = dir.join("slapd.pid");
            let pid = child.id().to_string();
            let ours = || std::fs::read_to_string(&pidfile).is_ok_and(|p| p.trim() == pid);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if ours() && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { url: format!("ldap://127.0.0.1:{port}"), port, ldaps_url, child, dir };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken meanwhile: another one
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            let _ = child.wait();
            eprintln!("slapd did not come up on port {port}: {err}");
        }
        panic!("slapd did not come up (see above)");
    }

    /// Freezes the server (SIGSTOP): the port stays open, nothing answers.
    pub fn freeze(&self) {
        let pid = self.child.id();
        signal(pid, "STOP");
        // A signal is delivered soon, not at once: wait until the kernel says it stopped.
        let stopped = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !stopped() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(stopped(), "slapd did not stop");
    }

    pub fn thaw(&self) {
        signal(self.child.id(), "CONT");
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop(); // SIGKILL ends a frozen slapd too
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

pub fn next_instance() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

impl Slapd {
    /// Bound as the directory's administrator, to change entries while it runs.
    pub async fn admin(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&self.url).await.expect("connect to slapd");
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        ldap.simple_bind(ADMIN_DN, ADMIN_PASSWORD).await.expect("bind").success().expect("admin bind");
        ldap
    }
}
