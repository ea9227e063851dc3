//! Test helpers (feature `test-support`): real RPMs built with the `rpm` crate's builder, so
//! no binary fixtures are needed anywhere in the workspace.

use std::path::{Path, PathBuf};

/// A package to build.
#[derive(Clone, Debug)]
pub struct TestRpm {
    /// Package name.
    pub name: String,
    /// Epoch (0 = none).
    pub epoch: u32,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture.
    pub arch: String,
    /// Files: absolute install path and content.
    pub files: Vec<(String, Vec<u8>)>,
}

impl TestRpm {
    /// A package with one file `/usr/share/<name>/VERSION` holding `name-version-release`.
    pub fn new(name: &str, version: &str, release: &str) -> Self {
        TestRpm {
            name: name.into(),
            epoch: 0,
            version: version.into(),
            release: release.into(),
            arch: "x86_64".into(),
            files: vec![(
                format!("/usr/share/{name}/VERSION"),
                format!("{name}-{version}-{release}\n").into_bytes(),
            )],
        }
    }

    /// Adds a file.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), content.into()));
        self
    }

    /// The file name rpmbuild would give it.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}-{}.{}.rpm",
            self.name, self.version, self.release, self.arch
        )
    }

    /// Builds it into `dir` under its canonical file name; returns the path.
    pub fn build(&self, dir: &Path) -> PathBuf {
        let path = dir.join(self.file_name());
        self.build_as(&path);
        path
    }

    /// Builds it to `path`, with gzip payload compression.
    pub fn build_as(&self, path: &Path) {
        let mut builder = rpm::PackageBuilder::new(
            &self.name,
            &self.version,
            "Apache-2.0",
            &self.arch,
            "stx-patch test package",
        );
        builder
            .release(self.release.clone())
            .using_config(rpm::BuildConfig::v4().compression(rpm::CompressionType::Gzip));
        if self.epoch != 0 {
            builder.epoch(self.epoch);
        }
        for (file, content) in &self.files {
            builder
                .with_file_contents(content.clone(), rpm::FileOptions::new(file.as_str()))
                .expect("valid test file");
        }
        let package = builder.build().expect("test RPM builds");
        package.write_file(path).expect("test RPM is written");
    }
}
