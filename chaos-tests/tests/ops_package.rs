//! The Debian package `hearth`: built with cargo-deb from the binaries the tests use, then
//! checked with `dpkg-deb` (every file, its mode and owner, the conffiles, the maintainer
//! scripts, the control fields) and `lintian` (clean, each waiver explained in
//! `ops/debian/hearth.lintian-overrides`).
//!
//! A release is packed from the release binaries (`cargo build --release --workspace --bins
//! && cargo deb -p hearth-broker --no-build`, see ops/README.md). To stay quick, this test
//! packs the debug binaries `cargo build --workspace --bins` made, with cargo-deb's
//! `--no-build`: cargo-deb reads binaries from `<target dir>/release/`, so the test gives it a
//! target dir of its own whose `release` is a link to the binaries' directory, and
//! `--strip --no-dbgsym --fast` (about 4 s instead of a release build's minutes). The
//! package holds the same files either way; only the binaries' machine code differs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_chaos_tests::ops::{ops_dir, workspace_root};
use hearth_chaos_tests::tools::{checked, run, text};
use hearth_chaos_tests::{bin_path, tools};

/// Lintian tags that one kind of build trips and the other does not (see the overrides
/// file): their waivers may go unused in this test's build.
const PROFILE_DEPENDENT_TAGS: [&str; 2] =
    ["spelling-error-in-binary", "hardening-no-fortify-functions"];

/// Every file of the package, with its mode.
const EXPECTED_FILES: &[(&str, &str)] = &[
    ("./usr/bin/hearth", "-rwxr-xr-x"),
    ("./usr/bin/hearth-broker", "-rwxr-xr-x"),
    ("./usr/bin/hearth-worker", "-rwxr-xr-x"),
    (
        "./usr/lib/systemd/system/hearth-broker@.service",
        "-rw-r--r--",
    ),
    (
        "./usr/lib/systemd/system/hearth-worker@.service",
        "-rw-r--r--",
    ),
    ("./usr/lib/sysusers.d/hearth.conf", "-rw-r--r--"),
    ("./etc/hearth/primary.toml", "-rw-r--r--"),
    ("./etc/hearth/backup.toml", "-rw-r--r--"),
    ("./etc/hearth/worker.toml", "-rw-r--r--"),
    ("./usr/share/doc/hearth/README.md", "-rw-r--r--"),
    ("./usr/share/doc/hearth/ops/README.md", "-rw-r--r--"),
    ("./usr/share/doc/hearth/copyright", "-rw-r--r--"),
    ("./usr/share/doc/hearth/changelog.Debian.gz", "-rw-r--r--"),
    (
        "./usr/share/doc/hearth/examples/prometheus/prometheus.yml",
        "-rw-r--r--",
    ),
    (
        "./usr/share/doc/hearth/examples/prometheus/hearth-alerts.yml",
        "-rw-r--r--",
    ),
    (
        "./usr/share/doc/hearth/examples/grafana/hearth.json",
        "-rw-r--r--",
    ),
    ("./usr/share/lintian/overrides/hearth", "-rw-r--r--"),
];

/// Files shipped exactly as they are in the repository.
const VERBATIM: &[(&str, &str)] = &[
    (
        "usr/lib/systemd/system/hearth-broker@.service",
        "ops/systemd/hearth-broker@.service",
    ),
    (
        "usr/lib/systemd/system/hearth-worker@.service",
        "ops/systemd/hearth-worker@.service",
    ),
    (
        "usr/lib/sysusers.d/hearth.conf",
        "ops/debian/hearth.sysusers",
    ),
    ("etc/hearth/primary.toml", "ops/config/primary.toml"),
    ("etc/hearth/backup.toml", "ops/config/backup.toml"),
    ("etc/hearth/worker.toml", "ops/config/worker.toml"),
    (
        "usr/share/doc/hearth/examples/prometheus/prometheus.yml",
        "ops/prometheus/prometheus.yml",
    ),
    (
        "usr/share/doc/hearth/examples/prometheus/hearth-alerts.yml",
        "ops/prometheus/hearth-alerts.yml",
    ),
    (
        "usr/share/doc/hearth/examples/grafana/hearth.json",
        "ops/grafana/hearth.json",
    ),
    (
        "usr/share/lintian/overrides/hearth",
        "ops/debian/hearth.lintian-overrides",
    ),
];

fn scratch_dir() -> PathBuf {
    tools::scratch_dir(env!("CARGO_TARGET_TMPDIR"), "hearth-deb")
}

/// Builds the package from the built (debug) binaries into `dir/out`; returns its path.
fn build_package(cargo_deb: &Path, dir: &Path) -> PathBuf {
    let bins = bin_path("hearth-broker")
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    for bin in ["hearth", "hearth-worker"] {
        assert!(
            bins.join(bin).is_file(),
            "{bin} missing beside hearth-broker"
        );
    }
    let target = dir.join("target");
    std::fs::create_dir_all(&target).expect("creating the target dir");
    std::os::unix::fs::symlink(&bins, target.join("release")).expect("linking the binaries");
    let out = dir.join("out");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = run(Command::new(cargo_deb)
        .current_dir(workspace_root())
        .env("CARGO", cargo)
        .env("CARGO_TARGET_DIR", &target)
        // `cargo deb` is cargo-deb run by cargo, which passes "deb" first.
        .args([
            "deb",
            "-p",
            "hearth-broker",
            "--no-build",
            "--no-dbgsym",
            "--strip",
            "--fast",
        ])
        .arg("-o")
        .arg(&out));
    checked("cargo deb", output);
    let debs: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("reading the output dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(
        debs.len(),
        1,
        "one .deb expected in {}: {debs:?}",
        out.display()
    );
    debs[0].clone()
}

/// The files of docs/ the package ships (`*.md`, and the `*.py`/`*.sh` examples), as
/// (path in the package, path in the repository).
fn doc_files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (dir, exts) in [("docs", &["md"][..]), ("docs/examples", &["py", "sh"][..])] {
        let Ok(entries) = std::fs::read_dir(workspace_root().join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if path.is_file() && exts.contains(&ext) {
                out.push((
                    format!("usr/share/doc/hearth/{dir}/{name}"),
                    format!("{dir}/{name}"),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The version the package must carry: the workspace's, Debian revision 1, which the top
/// entry of ops/debian/changelog must name too.
fn expected_version() -> String {
    format!("{}-1", env!("CARGO_PKG_VERSION"))
}

#[test]
fn debian_package_has_every_file_and_passes_lintian() {
    // dpkg-shlibdeps (dpkg-dev) is what cargo-deb asks for the binaries' library Depends.
    let (Some(cargo_deb), Some(dpkg_deb), Some(lintian), Some(_)) = (
        tools::require("cargo-deb"),
        tools::require("dpkg-deb"),
        tools::require("lintian"),
        tools::require("dpkg-shlibdeps"),
    ) else {
        return;
    };
    let dir = scratch_dir();
    let deb = build_package(&cargo_deb, &dir);
    eprintln!("built {}", deb.display());

    // Control fields.
    let field = |name: &str| -> String {
        checked(
            &format!("dpkg-deb --field {name}"),
            run(Command::new(&dpkg_deb).arg("--field").arg(&deb).arg(name)),
        )
        .trim()
        .to_owned()
    };
    assert_eq!(field("Package"), "hearth");
    assert_eq!(field("Version"), expected_version());
    assert_eq!(field("Section"), "net");
    let depends = field("Depends");
    for needed in [
        "libc6",
        "systemd | systemd-standalone-sysusers | systemd-sysusers",
    ] {
        assert!(
            depends.contains(needed),
            "Depends: {depends} lacks {needed}"
        );
    }
    let changelog = std::fs::read_to_string(ops_dir().join("debian").join("changelog"))
        .expect("reading ops/debian/changelog");
    assert!(
        changelog.starts_with(&format!("hearth ({}) ", expected_version())),
        "the top entry of ops/debian/changelog must be version {} (add an entry for a new \
         version)",
        expected_version()
    );
    let info = checked(
        "dpkg-deb --info",
        run(Command::new(&dpkg_deb).arg("--info").arg(&deb)),
    );
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.contains(script), "no {script} in:\n{info}");
    }

    // Every file, its mode and its owner, and nothing else.
    let contents = checked(
        "dpkg-deb --contents",
        run(Command::new(&dpkg_deb).arg("--contents").arg(&deb)),
    );
    let docs = doc_files();
    let mut expected_files: Vec<(String, &str)> = EXPECTED_FILES
        .iter()
        .map(|(path, mode)| ((*path).to_owned(), *mode))
        .collect();
    expected_files.extend(
        docs.iter()
            .map(|(path, _)| (format!("./{path}"), "-rw-r--r--")),
    );
    let mut files = BTreeSet::new();
    for line in contents.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(mode), Some(owner), Some(path)) = (fields.first(), fields.get(1), fields.last())
        else {
            panic!("unexpected dpkg-deb line: {line}");
        };
        assert!(
            *owner == "root/root" || *owner == "0/0",
            "{path} is owned by {owner}, not root"
        );
        if mode.starts_with('d') {
            continue;
        }
        let expected = expected_files.iter().find(|(p, _)| p == path);
        let Some((_, expected_mode)) = expected else {
            panic!("unexpected file in the package: {line}");
        };
        assert_eq!(mode, expected_mode, "mode of {path}");
        files.insert(*path);
    }
    for (path, _) in &expected_files {
        assert!(
            files.contains(path.as_str()),
            "{path} missing from the package:\n{contents}"
        );
    }

    // Conffiles and maintainer scripts.
    let control = dir.join("control");
    checked(
        "dpkg-deb --control",
        run(Command::new(&dpkg_deb)
            .arg("--control")
            .arg(&deb)
            .arg(&control)),
    );
    let read = |name: &str| {
        std::fs::read_to_string(control.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let conffiles: BTreeSet<String> = read("conffiles").lines().map(str::to_owned).collect();
    let expected_conffiles: BTreeSet<String> = ["primary", "backup", "worker"]
        .iter()
        .map(|c| format!("/etc/hearth/{c}.toml"))
        .collect();
    assert_eq!(conffiles, expected_conffiles);
    for script in ["postinst", "prerm", "postrm"] {
        let body = read(script);
        assert!(
            !body.contains("#DEBHELPER#"),
            "{script} still holds #DEBHELPER#"
        );
        checked(
            &format!("sh -n {script}"),
            run(Command::new("sh").arg("-n").arg(control.join(script))),
        );
    }
    let postinst = read("postinst");
    for needed in [
        "systemd-sysusers",
        "hearth.conf",
        "install -d -o hearth -g hearth -m 0750 /var/lib/hearth",
        "daemon-reload",
    ] {
        assert!(
            postinst.contains(needed),
            "postinst lacks {needed}:\n{postinst}"
        );
    }
    assert!(
        read("prerm").contains("stop 'hearth-broker@*.service' 'hearth-worker@*.service'"),
        "prerm must stop the running instances on removal"
    );

    // Files shipped verbatim, and binaries that run.
    let root = dir.join("root");
    checked(
        "dpkg-deb --extract",
        run(Command::new(&dpkg_deb)
            .arg("--extract")
            .arg(&deb)
            .arg(&root)),
    );
    let verbatim = VERBATIM
        .iter()
        .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
        .chain(docs);
    for (packaged, source) in verbatim {
        let packaged_bytes = std::fs::read(root.join(&packaged)).expect("a packaged file");
        let source_bytes = std::fs::read(workspace_root().join(&source)).expect("a source file");
        assert!(
            packaged_bytes == source_bytes,
            "{packaged} differs from {source}"
        );
    }
    assert!(
        std::fs::read_to_string(root.join("usr/lib/sysusers.d/hearth.conf"))
            .expect("sysusers")
            .lines()
            .any(|l| l.starts_with("u hearth ") && l.ends_with("/var/lib/hearth")),
        "the sysusers file must make the hearth user with its home in /var/lib/hearth"
    );
    for bin in ["hearth", "hearth-broker", "hearth-worker"] {
        let version = checked(
            &format!("{bin} --version"),
            run(Command::new(root.join("usr/bin").join(bin)).arg("--version")),
        );
        assert!(
            version.contains(env!("CARGO_PKG_VERSION")),
            "{bin}: {version}"
        );
    }

    // lintian: no finding that is not waived, no waiver that matches nothing (but the
    // profile-dependent ones).
    let output = run(Command::new(&lintian)
        .args([
            "--display-info",
            "--pedantic",
            "--fail-on",
            "error,warning,info,pedantic",
        ])
        .arg(&deb));
    let profile_dependent = |line: &str| {
        line.starts_with("I: hearth: unused-override ")
            && PROFILE_DEPENDENT_TAGS
                .iter()
                .any(|tag| line.contains(&format!("unused-override {tag} ")))
    };
    let lines: Vec<&str> = std::str::from_utf8(&output.stdout)
        .expect("lintian output is UTF-8")
        .lines()
        .filter(|l| !l.starts_with("N:") && !l.trim().is_empty())
        .collect();
    let findings: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !profile_dependent(l))
        .collect();
    // lintian fails on the tolerated findings too; any other failure is its own.
    assert!(
        output.status.success() || !lines.is_empty(),
        "lintian failed: {}
{}",
        output.status,
        text(&output.stderr)
    );
    assert!(
        findings.is_empty(),
        "lintian findings (fix them, or waive them with a reason in \
         ops/debian/hearth.lintian-overrides):\n{}\n(lintian exit status {})",
        findings.join("\n"),
        output.status
    );
    let _ = std::fs::remove_dir_all(&dir);
}
