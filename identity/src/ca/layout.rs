//! Where `ferrule ca init` puts each file of the layered CA.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::CaError;

/// The files of a CA directory. The root key belongs offline: move it off the machine after
/// `ca init`; only the issuing key (or its HSM handle) is needed by the control plane.
#[derive(Debug, Clone)]
pub struct CaLayout {
    dir: PathBuf,
}

impl CaLayout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("root.crt")
    }
    pub fn root_key(&self) -> PathBuf {
        self.dir.join("root.key")
    }
    pub fn intermediate_cert(&self) -> PathBuf {
        self.dir.join("intermediate.crt")
    }
    pub fn intermediate_key(&self) -> PathBuf {
        self.dir.join("intermediate.key")
    }
    pub fn issuing_cert(&self) -> PathBuf {
        self.dir.join("issuing.crt")
    }
    pub fn issuing_key(&self) -> PathBuf {
        self.dir.join("issuing.key")
    }
    /// The issuing CA certificate followed by the intermediate: what the control plane presents.
    pub fn chain(&self) -> PathBuf {
        self.dir.join("chain.pem")
    }
    /// The trust bundle (all accepted roots) that every node and gateway needs.
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle.pem")
    }
    /// CRLs of the root and the intermediate, signed offline (`ferrule ca crl`); the control
    /// plane serves them after the issuing CA's own.
    pub fn offline_crls(&self) -> PathBuf {
        self.dir.join("ca-crls.pem")
    }
    pub fn admin_cert(&self) -> PathBuf {
        self.dir.join("admin.crt")
    }
    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("admin.key")
    }

    pub(crate) fn outputs(&self) -> Vec<PathBuf> {
        vec![
            self.root_cert(),
            self.root_key(),
            self.intermediate_cert(),
            self.intermediate_key(),
            self.issuing_cert(),
            self.issuing_key(),
            self.chain(),
            self.bundle(),
            self.offline_crls(),
            self.admin_cert(),
            self.admin_key(),
        ]
    }
}

/// Writes a new file; never replaces one. Keys get mode 0600.
pub(crate) fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CaError::Exists {
                path: path.display().to_string(),
            },
            _ => io(e),
        })?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Writes beside `path` and renames over it, so a reader never sees half a file.
pub fn replace_file(path: &Path, contents: &str) -> Result<(), CaError> {
    let io = |source| CaError::Io {
        path: path.display().to_string(),
        source,
    };
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads every certificate of a PEM file, in order.
pub fn read_cert_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let bytes = std::fs::read(path).map_err(|source| CaError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaError::BadFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CaError::BadFile {
            path: path.display().to_string(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}
