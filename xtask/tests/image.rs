//! `cargo xtask image` end to end, with a real container runtime: the archives come out
//! byte-identical from two runs, a private containerd imports both the way `kind load
//! image-archive` does, lists them under the expected names and manifest digests, and runs every
//! binary in them (so the images carry all the libraries they need) and the entrypoints.
//!
//! Needs root, `containerd` and `runc` (`cargo xtask setup` installs them). The containerd is
//! this test's own: root, state, sockets and FIFOs in a temporary directory, no CRI plugin; it is
//! killed and its directory removed even when the test fails.

use std::{
    collections::BTreeSet,
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use flate2::read::GzDecoder;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const TAG: &str = "xtask-test";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// containerd namespace of everything this test creates.
const NAMESPACE: &str = "ferrule-image-test";
/// Where the shims of any containerd put their sockets (fixed in containerd 1.6).
const CONTAINERD_RUN_DIR: &str = "/run/containerd";

struct ImageCase {
    archive: &'static str,
    name: &'static str,
    binaries: &'static [&'static str],
    entrypoint: &'static str,
}

const IMAGES: [ImageCase; 2] = [
    ImageCase {
        archive: "agent.tar",
        name: "docker.io/ferrule/agent:xtask-test",
        binaries: &["ferrule", "ferrule-agent", "ferrule-cni"],
        entrypoint: "ferrule-agent",
    },
    ImageCase {
        archive: "control-plane.tar",
        name: "docker.io/ferrule/control-plane:xtask-test",
        binaries: &["ferrule", "ferrule-control-plane"],
        entrypoint: "ferrule-control-plane",
    },
];

#[test]
fn image_archives_are_reproducible_and_import_and_run_in_containerd() {
    assert!(
        is_root(),
        "this test starts containerd and runs containers: run it as root (`cargo xtask test`)"
    );
    // Under /tmp: the containerd socket path must stay short.
    let work = tempfile::Builder::new()
        .prefix("ferrule-image-")
        .tempdir_in("/tmp")
        .expect("temporary directory");
    let (first, second) = (work.path().join("first"), work.path().join("second"));
    build_images(&first);
    build_images(&second);

    let mut manifests = Vec::new();
    for image in &IMAGES {
        let archive = first.join(image.archive);
        assert_eq!(
            sha256(&fs::read(&archive).unwrap()),
            sha256(&fs::read(second.join(image.archive)).unwrap()),
            "two runs of `cargo xtask image` gave different {}",
            image.archive
        );
        manifests.push(check_archive(&archive, image));
    }

    let containerd = Containerd::start(&work.path().join("containerd"));
    for image in &IMAGES {
        // The flags `kind load image-archive` passes, with the snapshotter that works anywhere.
        let archive = first.join(image.archive);
        containerd.ctr_ok(&[
            "images",
            "import",
            "--all-platforms",
            "--digests",
            "--snapshotter",
            "native",
            archive.to_str().unwrap(),
        ]);
    }
    let listing = containerd.ctr_ok(&["images", "ls"]);
    for (image, manifest) in IMAGES.iter().zip(&manifests) {
        let listed = listing.lines().find_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            (columns.first() == Some(&image.name)).then(|| columns[2].to_owned())
        });
        assert_eq!(
            listed.as_deref(),
            Some(manifest.as_str()),
            "`ctr images ls` should list {} with manifest {manifest}:\n{listing}",
            image.name
        );
    }

    for (index, image) in IMAGES.iter().enumerate() {
        for (run, binary) in image.binaries.iter().enumerate() {
            if *binary == "ferrule-cni" {
                // A CNI plugin takes its command from CNI_COMMAND, not from flags.
                continue;
            }
            let output = containerd.run(
                image.name,
                &format!("t{index}-{run}"),
                &[&format!("/usr/local/bin/{binary}"), "--version"],
            );
            let package = match *binary {
                "ferrule-agent" => "ferrule-node-agent",
                other => other,
            };
            assert_eq!(
                (output.status.code(), stdout(&output).as_str()),
                (Some(0), format!("{package} {VERSION}\n").as_str()),
                "{binary} --version in {}: {}",
                image.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // No command: the entrypoint runs and, without --config, says how to use it.
        let output = containerd.run(image.name, &format!("t{index}-entrypoint"), &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.code() == Some(2)
                && stderr.contains(&format!("Usage: {} --config", image.entrypoint)),
            "the entrypoint of {} should be {} asking for --config: {output:?}",
            image.name,
            image.entrypoint
        );
    }
}

/// Runs `cargo xtask image` (this package's binary) for the debug binaries into `out`.
fn build_images(out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["image", "--profile", "dev", "--tag", TAG, "--out"])
        .arg(out)
        .status()
        .expect("xtask runs");
    assert!(status.success(), "`cargo xtask image` failed: {status}");
}

/// Checks what the archive says and carries, and returns the manifest digest of the image.
fn check_archive(path: &Path, image: &ImageCase) -> String {
    let files = entries(&fs::read(path).unwrap());
    let json = |name: &str| -> Value {
        let bytes = files.iter().find(|(n, _)| n == name);
        serde_json::from_slice(&bytes.unwrap_or_else(|| panic!("no {name}")).1).unwrap()
    };
    let blob = |digest: &Value| -> &[u8] {
        let name = format!("blobs/sha256/{}", &digest.as_str().unwrap()[7..]);
        let found = files.iter().find(|(n, _)| *n == name);
        &found.unwrap_or_else(|| panic!("no {name}")).1
    };
    let index = json("index.json");
    let descriptor = &index["manifests"][0];
    assert_eq!(
        descriptor["annotations"]["io.containerd.image.name"], image.name,
        "{index}"
    );
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"], TAG,
        "{index}"
    );
    let manifest: Value = serde_json::from_slice(blob(&descriptor["digest"])).unwrap();
    let config: Value = serde_json::from_slice(blob(&manifest["config"]["digest"])).unwrap();
    assert_eq!(
        config["config"]["Entrypoint"][0],
        format!("/usr/local/bin/{}", image.entrypoint)
    );
    assert_eq!(json("manifest.json")[0]["RepoTags"][0], image.name[10..]);

    // The layer holds the binaries, the shared objects and /etc/{passwd,group}: nothing else.
    let mut layer = Vec::new();
    GzDecoder::new(blob(&manifest["layers"][0]["digest"]))
        .read_to_end(&mut layer)
        .unwrap();
    let files: BTreeSet<String> = entries(&layer)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !name.ends_with('/'))
        .collect();
    let binaries: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix("usr/local/bin/").map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = image.binaries.iter().map(|b| (*b).to_owned()).collect();
    assert_eq!(binaries, expected, "binaries in {}", image.name);
    for file in &files {
        let shared_object = file.starts_with("lib") && file.contains(".so");
        let known =
            file.starts_with("usr/local/bin/") || file == "etc/passwd" || file == "etc/group";
        assert!(
            shared_object || known,
            "unexpected {file} in {}: {files:?}",
            image.name
        );
    }
    assert!(files.iter().any(|f| f.ends_with("/libc.so.6")), "{files:?}");
    descriptor["digest"].as_str().unwrap().to_owned()
}

/// (name, content) of every entry of a tar archive, in order.
fn entries(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut name = entry.path().unwrap().to_string_lossy().into_owned();
        if entry.header().entry_type().is_dir() && !name.ends_with('/') {
            name.push('/');
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        entries.push((name, content));
    }
    entries
}

/// A containerd of this test's own, stopped and cleaned up on drop.
struct Containerd {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    /// Whether /run/containerd was there before (else it is removed again once empty).
    run_dir_existed: bool,
}

impl Containerd {
    fn start(dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
        fs::write(
            &config,
            format!(
                "version = 2\n\
                 root = {root:?}\n\
                 state = {state:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {socket:?}\n\
                 [ttrpc]\n  address = {ttrpc:?}\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt:?}\n",
                root = path("root"),
                state = path("state"),
                socket = socket.to_str().unwrap(),
                ttrpc = format!("{}.ttrpc", socket.to_str().unwrap()),
                opt = path("opt"),
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let run_dir_existed = Path::new(CONTAINERD_RUN_DIR).exists();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd starts (is the containerd package installed? `cargo xtask setup`)");
        let mut containerd = Self {
            child,
            dir: dir.to_owned(),
            socket,
            run_dir_existed,
        };
        containerd.wait_ready();
        containerd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("containerd exited ({status}):\n{}", self.log());
            }
            if self.ctr(&["version"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd not ready within 30 s:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` against this containerd, in the test's namespace, given at most 2 minutes.
    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["120", "ctr", "--address"])
            .arg(&self.socket)
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr runs (is the containerd package installed?)")
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let output = self.ctr(args);
        assert!(
            output.status.success(),
            "ctr {args:?} failed: {}\ncontainerd log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        stdout(&output)
    }

    /// `ctr run --rm` of `image` as container `id` with `command` (the image's when empty).
    fn run(&self, image: &str, id: &str, command: &[&str]) -> Output {
        let (fifo, runc) = (self.dir.join("fifo"), self.dir.join("runc"));
        let mut args = vec![
            "run",
            "--rm",
            "--snapshotter",
            "native",
            "--fifo-dir",
            fifo.to_str().unwrap(),
            "--runc-root",
            runc.to_str().unwrap(),
            image,
            id,
        ];
        args.extend(command);
        self.ctr(&args)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims outlive containerd; ours are the processes that name our socket.
        let socket = self.socket.to_string_lossy().into_owned();
        for pid in processes_mentioning(&socket) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        // Container root filesystems left mounted by a failed run, deepest first.
        let mut mounts = mount_points_under(&self.dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = Command::new("umount").args(["-l", &mount]).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
        if !self.run_dir_existed {
            // Only removes what is empty: the shim socket directory, then /run/containerd.
            let _ = fs::remove_dir(Path::new(CONTAINERD_RUN_DIR).join("s"));
            let _ = fs::remove_dir(CONTAINERD_RUN_DIR);
        }
    }
}

fn processes_mentioning(text: &str) -> Vec<String> {
    let Ok(proc) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.filter_map(|entry| {
        let pid = entry.ok()?.file_name().into_string().ok()?;
        pid.parse::<u32>().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(text)
            .then_some(pid)
    })
    .collect()
}

fn mount_points_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|mount| mount.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}
