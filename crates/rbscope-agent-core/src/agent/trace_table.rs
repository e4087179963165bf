//! The agent's table of attached trace sessions: each session with the selectors it was
//! started with and the hooks the agent installed for it (`T`, the agent's own type, which
//! holds Ruby objects). Looked up by session id; the agent keeps it behind the GVL.

use rbscope_trace::selector::Selector;
use rbscope_trace::session::Session;
use std::sync::Arc;

/// One attached session.
pub struct Attached<T> {
    pub session: Arc<Session>,
    pub selectors: Vec<Selector>,
    pub hooks: T,
}

/// The attached sessions, in the order they were attached.
pub struct Table<T>(Vec<Attached<T>>);

impl<T> Default for Table<T> {
    fn default() -> Table<T> {
        Table::new()
    }
}

impl<T> Table<T> {
    pub const fn new() -> Table<T> {
        Table(Vec::new())
    }

    pub fn push(&mut self, attached: Attached<T>) {
        self.0.push(attached)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Attached<T>> {
        self.0.iter()
    }

    pub fn get(&self, id: u64) -> Option<&Attached<T>> {
        self.0.iter().find(|a| a.session.id == id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Attached<T>> {
        self.0.iter_mut().find(|a| a.session.id == id)
    }

    /// Takes session `id` out of the table.
    pub fn remove(&mut self, id: u64) -> Option<Attached<T>> {
        let at = self.0.iter().position(|a| a.session.id == id)?;
        Some(self.0.remove(at))
    }

    /// The ids of the attached sessions.
    pub fn ids(&self) -> Vec<u64> {
        self.0.iter().map(|a| a.session.id).collect()
    }

    /// Every attached session.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.0.iter().map(|a| a.session.clone()).collect()
    }

    /// The captures of session `id`'s selector `index` (none past the list); None when the
    /// session is not attached.
    pub fn captures(&self, id: u64, index: usize) -> Option<Vec<rbscope_trace::selector::Capture>> {
        let a = self.get(id)?;
        Some(
            a.selectors
                .get(index)
                .map(|s| s.captures.clone())
                .unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attached(id: u64, selectors: &[&str]) -> Attached<u32> {
        Attached {
            session: Arc::new(Session::new(id, 4096, None).unwrap()),
            selectors: selectors
                .iter()
                .map(|s| Selector::parse(s).unwrap())
                .collect(),
            hooks: id as u32 * 10,
        }
    }

    #[test]
    fn sessions_are_found_and_removed_by_id() {
        let mut t = Table::new();
        t.push(attached(1, &[]));
        t.push(attached(2, &["A#b(x)", "C#d"]));
        t.push(attached(3, &[]));
        assert_eq!(t.get(2).map(|a| a.hooks), Some(20));
        t.get_mut(3).unwrap().hooks = 33;
        assert_eq!(t.remove(3).map(|a| a.hooks), Some(33));
        assert!(t.remove(3).is_none() && t.get(3).is_none());
        let ids: Vec<u64> = t.sessions().iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(t.ids(), [1, 2]);
        assert_eq!(t.iter().count(), 2);
    }

    #[test]
    fn captures_of_a_selector() {
        let mut t = Table::new();
        t.push(attached(2, &["A#b(x, @y)", "C#d"]));
        let texts: Vec<String> = t
            .captures(2, 0)
            .unwrap()
            .into_iter()
            .map(|c| c.text)
            .collect();
        assert_eq!(texts, ["x", "@y"]);
        assert_eq!(t.captures(2, 1).map(|c| c.len()), Some(0));
        assert_eq!(t.captures(2, 9).map(|c| c.len()), Some(0));
        assert!(t.captures(7, 0).is_none());
    }
}
