//! What the forked child that writes a heap dump reports on its pipe: one line,
//! `ok OBJECTS ROOTS BYTES ALLOCATION_INFO` or `err MESSAGE`.
//!
//! Why here: the child and the parent's reader must agree on it, and the parent must tell a
//! report from the silence of a child that died.

/// A finished child's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Ok {
        objects: u64,
        roots: u64,
        bytes: u64,
        allocation_info: bool,
    },
    Err(String),
}

impl Report {
    /// The line the child writes (a message's newlines become spaces).
    pub fn line(&self) -> String {
        match self {
            Report::Ok {
                objects,
                roots,
                bytes,
                allocation_info,
            } => format!(
                "ok {objects} {roots} {bytes} {}\n",
                u8::from(*allocation_info)
            ),
            Report::Err(e) => format!("err {}\n", e.replace('\n', " ")),
        }
    }

    /// What the child said, or None when it said nothing usable (it died first). Missing
    /// numbers read as 0.
    pub fn parse(text: &str) -> Option<Report> {
        let mut words = text.trim_end().splitn(2, ' ');
        match (words.next(), words.next()) {
            (Some("ok"), Some(rest)) => {
                let n: Vec<u64> = rest.split(' ').filter_map(|x| x.parse().ok()).collect();
                let at = |i: usize| n.get(i).copied();
                Some(Report::Ok {
                    objects: at(0).unwrap_or(0),
                    roots: at(1).unwrap_or(0),
                    bytes: at(2).unwrap_or(0),
                    allocation_info: at(3) == Some(1),
                })
            }
            (Some("err"), Some(msg)) => Some(Report::Err(msg.to_string())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_back() {
        let ok = Report::Ok {
            objects: 123_456,
            roots: 7,
            bytes: 9_876_543_210,
            allocation_info: true,
        };
        assert_eq!(ok.line(), "ok 123456 7 9876543210 1\n");
        assert_eq!(Report::parse(&ok.line()), Some(ok));
        let err = Report::Err("writing failed:\nthe disk is full".into());
        assert_eq!(err.line(), "err writing failed: the disk is full\n");
        assert_eq!(
            Report::parse(&err.line()),
            Some(Report::Err("writing failed: the disk is full".into()))
        );
    }

    #[test]
    fn silence_and_odd_lines() {
        assert_eq!(Report::parse(""), None);
        assert_eq!(Report::parse("ok"), None);
        assert_eq!(Report::parse("done 1 2"), None);
        assert_eq!(
            Report::parse("ok 5 x"),
            Some(Report::Ok {
                objects: 5,
                roots: 0,
                bytes: 0,
                allocation_info: false
            })
        );
    }
}
