//! Places for streaming imports: each one holds a task and a plugin
//! instance for as long as its client takes to send the body, so a node
//! runs at most `--max-stream-imports` of them, and one user at most
//! `--max-stream-imports-per-user`. A slot is given back when its
//! [`ImportSlot`] is dropped, whatever ended the import.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The node runs its maximum of streaming imports.
    Node(usize),
    /// The user runs their maximum.
    User(usize),
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Full::Node(n) => write!(
                f,
                "this server already runs {n} streaming imports (--max-stream-imports); \
                 send it again in a moment, or upload it (POST /api/v1/uploads) and import that"
            ),
            Full::User(n) => write!(
                f,
                "you already run {n} streaming imports (--max-stream-imports-per-user); \
                 send this one when one of them has ended"
            ),
        }
    }
}

/// The streaming imports running on this node, per user.
pub struct ImportSlots {
    per_node: usize,
    per_user: usize,
    running: Arc<Mutex<HashMap<String, usize>>>,
}

impl ImportSlots {
    pub fn new(per_node: usize, per_user: usize) -> ImportSlots {
        ImportSlots {
            per_node,
            per_user,
            running: Arc::default(),
        }
    }

    /// A slot for one import by `user`, or why there is none.
    pub fn take(&self, user: &str) -> Result<ImportSlot, Full> {
        let mut running = self.running.lock().unwrap();
        if running.values().sum::<usize>() >= self.per_node {
            return Err(Full::Node(self.per_node));
        }
        let mine = running.entry(user.to_string()).or_default();
        if *mine >= self.per_user {
            return Err(Full::User(self.per_user));
        }
        *mine += 1;
        Ok(ImportSlot {
            user: user.to_string(),
            running: self.running.clone(),
        })
    }
}

/// One running streaming import's place.
pub struct ImportSlot {
    user: String,
    running: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for ImportSlot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap();
        if let Some(n) = running.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_user_and_per_node_and_come_back_when_dropped() {
        let slots = ImportSlots::new(3, 2);
        let a1 = slots.take("alice").unwrap();
        let _a2 = slots.take("alice").unwrap();
        assert_eq!(slots.take("alice").err(), Some(Full::User(2)));
        let _b1 = slots.take("bob").unwrap();
        assert_eq!(slots.take("carol").err(), Some(Full::Node(3)));
        drop(a1);
        assert!(slots.take("carol").is_ok(), "a dropped slot is free again");
        assert!(slots.take("alice").is_ok());
    }
}
