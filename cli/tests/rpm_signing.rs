//! RPM signatures enforced: the controller (`--require-signed-rpms`) refuses uploads whose RPMs
//! are unsigned, signed by an unknown key or altered after signing; an agent with
//! `--rpm-keyring` refuses to install such a package and writes nothing to its root.

mod common;

use std::path::{Path, PathBuf};

use common::Site;
use patch_format::testing::TestRpm;
use patch_format::{PatchBuilder, PatchMetadata, RpmSigningKey, Status};

struct Keys {
    trusted: RpmSigningKey,
    stranger: RpmSigningKey,
    dir: tempfile::TempDir,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rpm-keyring")).unwrap();
    let trusted = RpmSigningKey::generate("trusted <t@example.invalid>").unwrap();
    std::fs::write(
        dir.path().join("rpm-keyring/trusted.asc"),
        &trusted.public_asc,
    )
    .unwrap();
    let stranger = RpmSigningKey::generate("stranger <s@example.invalid>").unwrap();
    Keys {
        trusted: RpmSigningKey::from_asc(trusted.secret_asc.as_bytes()).unwrap(),
        stranger: RpmSigningKey::from_asc(stranger.secret_asc.as_bytes()).unwrap(),
        dir,
    }
}

/// How the patch's one RPM is prepared.
enum Rpm<'a> {
    Unsigned,
    SignedBy(&'a RpmSigningKey),
    TamperedAfterSigning(&'a RpmSigningKey),
}

/// A patch upgrading sysinv to 231 (signed with the site's patch key, whatever its RPM is).
fn patch(site: &Site, id: &str, rpm: Rpm) -> PathBuf {
    let dir = site.path(&format!("build-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = TestRpm::new("sysinv", "1.0", "231")
        .file("/usr/lib/sysinv/api.py", "VERSION = 231\n".repeat(50))
        .build(&dir);
    let signed_dir = dir.join("signed");
    std::fs::create_dir_all(&signed_dir).unwrap();
    let signed = signed_dir.join(plain.file_name().unwrap());
    let sign = |key: &RpmSigningKey| key.sign_file(&plain, &signed).unwrap();
    let file = match rpm {
        Rpm::Unsigned => plain.clone(),
        Rpm::SignedBy(key) => {
            sign(key);
            signed.clone()
        }
        Rpm::TamperedAfterSigning(key) => {
            sign(key);
            let mut bytes = std::fs::read(&signed).unwrap();
            let at = bytes.len() - 10;
            bytes[at] ^= 0x40;
            std::fs::write(&signed, bytes).unwrap();
            signed.clone()
        }
    };
    let mut m = PatchMetadata::new(id, "19.01");
    m.status = Status::Released;
    m.reboot_required = false;
    let mut b = PatchBuilder::new(m);
    b.add_rpm(&file, &[]).unwrap();
    b.write_to_dir(&site.path("patches"), &site.key).unwrap().0
}

/// A site with compute-0's agent checking RPM signatures against `keyring`. The base load
/// (unsigned here) is installed at boot before the keyring is configured; from then on every
/// RPM must verify.
fn site_with_checking_agent(keyring: &Path) -> Site {
    let mut site = Site::new();
    assert!(
        site.agent_command("compute-0", "worker")
            .arg("--install-local")
            .status()
            .unwrap()
            .success()
    );
    let daemon = site
        .agent_command("compute-0", "worker")
        .args(["--rpm-keyring", keyring.to_str().unwrap()])
        .spawn()
        .unwrap();
    site.agents.push(daemon);
    site.wait_for("compute-0 current", |s| {
        s.host("compute-0")["patch_current"] == true
    });
    site
}

fn upload(site: &Site, patch: &Path) -> (bool, String) {
    sw_patch(site, &["upload", patch.to_str().unwrap()])
}

/// `sw-patch` on the site: whether it succeeded, and everything it printed.
fn sw_patch(site: &Site, args: &[&str]) -> (bool, String) {
    let out = site.run("sw-patch", args);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_controller_refuses_unsigned_foreign_and_altered_rpms() {
    let keys = keys();
    let keyring = keys.dir.path().join("rpm-keyring");
    let site = Site::new_with(&[
        "--require-signed-rpms",
        "--rpm-keyring",
        keyring.to_str().unwrap(),
    ]);
    for (id, rpm, why) in [
        ("UNSIGNED", Rpm::Unsigned, "not signed"),
        (
            "FOREIGN",
            Rpm::SignedBy(&keys.stranger),
            "not signed by a trusted key",
        ),
        (
            "ALTERED",
            Rpm::TamperedAfterSigning(&keys.trusted),
            "sysinv-1.0-231.x86_64.rpm",
        ),
    ] {
        let (ok, out) = upload(&site, &patch(&site, id, rpm));
        assert!(
            !ok || out.contains("RPM signatures are required"),
            "{id}: {out}"
        );
        assert!(out.contains("RPM signatures are required"), "{id}: {out}");
        assert!(out.contains(why), "{id}: {out}");
    }
    let query = site.ok(&["query"]);
    assert!(
        !query.contains("UNSIGNED") && !query.contains("ALTERED"),
        "{query}"
    );
    let (ok, out) = upload(&site, &patch(&site, "SIGNED", Rpm::SignedBy(&keys.trusted)));
    assert!(ok && out.contains("SIGNED is now available"), "{out}");
}

#[test]
fn an_agent_refuses_a_foreign_signature_and_leaves_its_root_alone() {
    let keys = keys();
    let keyring = keys.dir.path().join("rpm-keyring");
    let site = site_with_checking_agent(&keyring);
    let before = common::root_snapshot(&site.root("compute-0"));

    let foreign = patch(&site, "FOREIGN", Rpm::SignedBy(&keys.stranger));
    assert!(upload(&site, &foreign).0);
    site.ok(&["apply", "FOREIGN"]);
    let (ok, text) = sw_patch(&site, &["host-install", "compute-0"]);
    assert!(!ok, "{text}");
    let host = site.host("compute-0");
    assert_eq!(host["state"], "install-failed", "{host}");
    let error = host["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains("package sysinv") && error.contains("not signed by a trusted key"),
        "{host}"
    );
    assert_eq!(common::root_snapshot(&site.root("compute-0")), before);

    // The same update signed by the trusted key installs.
    site.ok(&["remove", "FOREIGN"]);
    site.wait_for("FOREIGN available again", |s| {
        s.patch_state("FOREIGN") == "Available"
    });
    // Its RPM has the same name as the trusted one's: delete it first.
    site.ok(&["delete", "FOREIGN"]);
    let signed = patch(&site, "TRUSTED", Rpm::SignedBy(&keys.trusted));
    assert!(upload(&site, &signed).0);
    site.ok(&["apply", "TRUSTED"]);
    site.ok(&["host-install", "compute-0"]);
    assert_eq!(site.host("compute-0")["patch_current"], true);
    assert!(
        std::fs::read_to_string(site.root("compute-0").join("usr/lib/sysinv/api.py"))
            .unwrap()
            .starts_with("VERSION = 231")
    );
}

#[test]
fn an_agent_refuses_an_rpm_altered_after_signing() {
    let keys = keys();
    let keyring = keys.dir.path().join("rpm-keyring");
    let site = site_with_checking_agent(&keyring);
    let before = common::root_snapshot(&site.root("compute-0"));
    let altered = patch(&site, "ALTERED", Rpm::TamperedAfterSigning(&keys.trusted));
    assert!(upload(&site, &altered).0);
    site.ok(&["apply", "ALTERED"]);
    let (ok, text) = sw_patch(&site, &["host-install", "compute-0"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("package sysinv"),
        "host-install shows why: {text}"
    );
    let error = site.host("compute-0")["last_error"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(error.contains("contents do not match"), "{error}");
    assert_eq!(common::root_snapshot(&site.root("compute-0")), before);
}
