//! Several controller URLs, one active: requests go to the one that answered last, move on
//! when it cannot be reached or says it is not active (a standby answers `307` and names the
//! active one in `X-Stx-Active-Url`, which joins the list if it was not in it).

use std::cell::{Cell, RefCell};

/// The URLs of the controllers, tried in turn.
pub struct Failover {
    bases: RefCell<Vec<String>>,
    current: Cell<usize>,
}

/// Why no controller answered.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl Failover {
    /// From `--url`: one URL or several separated by commas.
    pub fn new(urls: &str) -> Failover {
        let bases: Vec<String> = urls
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        Failover {
            bases: RefCell::new(bases),
            current: Cell::new(0),
        }
    }

    /// The URL requests go to now.
    pub fn base(&self) -> String {
        let bases = self.bases.borrow();
        bases.get(self.current.get()).cloned().unwrap_or_default()
    }

    /// Every URL, for messages.
    pub fn all(&self) -> String {
        self.bases.borrow().join(", ")
    }

    /// Sends the request `build` makes for a base URL, to the active controller.
    pub fn send(
        &self,
        build: impl Fn(&str) -> reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, Unreachable> {
        let mut last = String::from("no controller URL given");
        let attempts = self.bases.borrow().len() + 1;
        for _ in 0..attempts {
            let base = self.base();
            if base.is_empty() {
                break;
            }
            match build(&base).send() {
                Ok(r) if r.status() == reqwest::StatusCode::TEMPORARY_REDIRECT => {
                    last = format!("{base} is not the active controller");
                    let active = r
                        .headers()
                        .get("x-stx-active-url")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim_end_matches('/').to_owned());
                    self.switch(active);
                }
                Ok(r) => return Ok(r),
                // Only a request that never reached a controller is sent again: one that timed
                // out waiting for its answer may have been carried out.
                Err(e) if e.is_connect() => {
                    last = format!("cannot reach {base}: {e}");
                    self.switch(None);
                }
                Err(e) => return Err(Unreachable(format!("{base}: {e}"))),
            }
        }
        Err(Unreachable(last))
    }

    /// Moves to `active` (added if new), or to the next URL.
    fn switch(&self, active: Option<String>) {
        let mut bases = self.bases.borrow_mut();
        match active {
            Some(url) => {
                let at = match bases.iter().position(|b| *b == url) {
                    Some(i) => i,
                    None => {
                        bases.push(url);
                        bases.len() - 1
                    }
                };
                self.current.set(at);
            }
            None => self
                .current
                .set((self.current.get() + 1) % bases.len().max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_and_the_active_one_joins() {
        let f = Failover::new("http://a:1/, http://b:2");
        assert_eq!(f.base(), "http://a:1");
        f.switch(None);
        assert_eq!(f.base(), "http://b:2");
        f.switch(Some("http://c:3".into()));
        assert_eq!(f.base(), "http://c:3");
        assert_eq!(f.all(), "http://a:1, http://b:2, http://c:3");
        f.switch(Some("http://a:1".into()));
        assert_eq!(f.base(), "http://a:1");
    }
}
