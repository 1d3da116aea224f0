//! The kill switch (RTS 6 Art. 12): stop every intent, an algorithm's or a trader's, at once.

use std::collections::BTreeSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// What a kill covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KillScope {
    /// Everything.
    All,
    /// One algorithm.
    Algo(String),
    /// One trader.
    Trader(String),
}

/// The engaged kills, for `GET /v2/trading/kill`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KillState {
    /// Everything is stopped.
    pub all: bool,
    /// Stopped algorithms.
    pub algos: BTreeSet<String>,
    /// Stopped traders.
    pub traders: BTreeSet<String>,
}

/// The switch. Checking is a relaxed load when nothing is engaged, so the signal path pays
/// nothing for it.
#[derive(Debug, Default)]
pub struct KillSwitch {
    any: AtomicBool,
    state: RwLock<KillState>,
}

impl KillSwitch {
    /// Engages `scope`; false when it was already engaged.
    pub fn engage(&self, scope: &KillScope) -> bool {
        let mut s = self.write();
        let changed = match scope {
            KillScope::All => !std::mem::replace(&mut s.all, true),
            KillScope::Algo(a) => s.algos.insert(a.clone()),
            KillScope::Trader(t) => s.traders.insert(t.clone()),
        };
        self.any.store(true, Ordering::Release);
        changed
    }

    /// Releases `scope`; false when it was not engaged.
    pub fn release(&self, scope: &KillScope) -> bool {
        let mut s = self.write();
        let changed = match scope {
            KillScope::All => std::mem::replace(&mut s.all, false),
            KillScope::Algo(a) => s.algos.remove(a),
            KillScope::Trader(t) => s.traders.remove(t),
        };
        self.any.store(
            s.all || !s.algos.is_empty() || !s.traders.is_empty(),
            Ordering::Release,
        );
        changed
    }

    /// The scope that stops an intent of `algo` for `trader`, if any.
    pub fn stops(&self, algo: &str, trader: &str) -> Option<KillScope> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let s = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.all {
            Some(KillScope::All)
        } else if s.algos.contains(algo) {
            Some(KillScope::Algo(algo.to_owned()))
        } else if s.traders.contains(trader) {
            Some(KillScope::Trader(trader.to_owned()))
        } else {
            None
        }
    }

    /// What is engaged.
    pub fn state(&self) -> KillState {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KillState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_stop_what_they_name() {
        let k = KillSwitch::default();
        assert_eq!(k.stops("a", "t"), None);
        assert!(k.engage(&KillScope::Algo("a".into())));
        assert!(!k.engage(&KillScope::Algo("a".into())));
        assert_eq!(k.stops("a", "t"), Some(KillScope::Algo("a".into())));
        assert_eq!(k.stops("b", "t"), None);
        k.engage(&KillScope::Trader("t".into()));
        assert_eq!(k.stops("b", "t"), Some(KillScope::Trader("t".into())));
        k.engage(&KillScope::All);
        assert_eq!(k.stops("z", "z"), Some(KillScope::All));
        assert!(k.release(&KillScope::All));
        assert!(k.release(&KillScope::Algo("a".into())));
        assert!(k.release(&KillScope::Trader("t".into())));
        assert_eq!(k.stops("a", "t"), None);
        assert_eq!(k.state(), KillState::default());
    }
}
