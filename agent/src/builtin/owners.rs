//! User and group names resolved as rpm resolves them: in the root's own `/etc/passwd` and
//! `/etc/group` (never the agent's host), `root` always 0, an unknown name becomes root
//! (rpm warns "user X does not exist - using root" and does the same).

use std::collections::HashMap;
use std::path::Path;

/// Name → id tables of one root.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

/// One `name:x:id:…` table; lines that do not parse are skipped (as getpwnam skips them).
fn table(text: &str) -> HashMap<String, u32> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?.trim();
            let id = fields.nth(1)?.trim().parse().ok()?;
            (!name.is_empty() && !name.starts_with('#')).then(|| (name.to_owned(), id))
        })
        .collect()
}

impl Owners {
    /// Reads the tables of `root` (missing files: only `root` is known).
    pub(crate) fn of_root(root: &Path) -> Owners {
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
        Owners {
            users: table(&read("etc/passwd")),
            groups: table(&read("etc/group")),
        }
    }

    /// The uid of `name`.
    pub(crate) fn uid(&self, name: &str) -> u32 {
        id_of(&self.users, name)
    }

    /// The gid of `name`.
    pub(crate) fn gid(&self, name: &str) -> u32 {
        id_of(&self.groups, name)
    }
}

/// `root` is always 0; an unknown name becomes root, as rpm does.
fn id_of(table: &HashMap<String, u32>, name: &str) -> u32 {
    if name == "root" {
        return 0;
    }
    table.get(name).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_roots_tables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nsysinv:x:168:168::/:/sbin/nologin\nbroken\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nsysinv:x:169:\n").unwrap();
        let owners = Owners::of_root(dir.path());
        assert_eq!(owners.uid("sysinv"), 168);
        assert_eq!(owners.gid("sysinv"), 169);
        assert_eq!(owners.uid("nobody-here"), 0);
        assert_eq!(owners.uid("root"), 0);
    }
}
