//! The replica's database connection budget (`[serve.limits] connection-limit`): the most connections all
//! children open together, whatever their kind (executor, engine), key (client version, schema) or pool
//! slot. A key's pool takes its part when it is created and gives it back when it stops; the supervisor
//! splits that part over the pool's children and each launcher turns a child's share into its own pool's
//! bound. While more than `on-demand-connections` are free, a new pool takes everything but that reserve
//! (the project's executors, pinned at start, or the first schema a 4.x–6.x client uploads); after that, a
//! pool that starts on demand (another client version, another schema) takes one connection per child from
//! what is free, so the reserve serves as many keys as it can; when nothing is free, the supervisor stops
//! its least recently used pool that nobody can be using (unpinned, nothing in flight, quiet for longer than
//! a transaction lives) and takes its part once its children have exited; failing that, the pool does not
//! start and the request that asked for it gets a clear error.
//!
//! Deliberately not here: counting the connections actually open (`dbconns`), how a child bounds its pool
//! (the launchers), which children a key has (the supervisor).

use std::sync::{Arc, Mutex};

/// What this replica's children may open, and what they hold.
#[derive(Debug)]
pub struct Budget {
    total: usize,
    on_demand: usize,
    held: Mutex<usize>,
}

/// A pool's part of the budget, given back when dropped.
#[derive(Debug)]
pub struct Grant {
    budget: Arc<Budget>,
    connections: usize,
}

impl Grant {
    /// The connections this part allows.
    pub fn connections(&self) -> usize {
        self.connections
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let mut held = self.budget.held();
        *held = held.saturating_sub(self.connections);
    }
}

/// Nothing is left for a pool that starts on demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spent {
    /// `connection-limit`.
    pub total: usize,
    /// What is held now.
    pub held: usize,
}

impl std::fmt::Display for Spent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this replica's database connections are all given out: running children hold {} of `[serve.limits] connection-limit` = {} and none of their pools is quiet yet (a pool gives its part back once unused for longer than a transaction lives, `transaction-max-wait` + `transaction-max-timeout`, when a new one needs it); retry later, or raise `connection-limit` or `on-demand-connections` within the database's max_connections",
            self.held, self.total
        )
    }
}

impl Budget {
    /// A budget of `total` connections (at least 1), `on_demand` of them (less than `total`) held back from
    /// pinned pools.
    pub fn new(total: usize, on_demand: usize) -> Arc<Budget> {
        let total = total.max(1);
        Arc::new(Budget { total, on_demand: on_demand.min(total - 1), held: Mutex::new(0) })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, usize> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `connection-limit`.
    pub fn total(&self) -> usize {
        self.total
    }

    /// What running pools hold now.
    pub fn granted(&self) -> usize {
        *self.held()
    }

    /// The most one pool takes: everything but the on-demand part.
    pub fn cap(&self) -> usize {
        self.total - self.on_demand
    }

    /// A part for a new pool of `children`: everything free but the on-demand reserve while more than
    /// the reserve is free, else one connection per child as far as they go. `Err` when nothing is free.
    pub fn take(self: &Arc<Self>, children: usize) -> Result<Grant, Spent> {
        let mut held = self.held();
        let free = self.total.saturating_sub(*held);
        let connections = if free > self.on_demand { free - self.on_demand } else { free.min(children.max(1)) };
        if connections == 0 {
            return Err(Spent { total: self.total, held: *held });
        }
        *held += connections;
        Ok(Grant { budget: self.clone(), connections })
    }
}

/// Child `slot`'s part of `connections` shared by a pool of `children` (no more children than
/// connections): as even as it goes, the first ones one more.
pub fn share(connections: usize, children: usize, slot: usize) -> usize {
    let children = children.clamp(1, connections.max(1));
    connections / children + usize::from(slot < connections % children)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pool_takes_all_but_the_reserve_and_later_ones_one_per_child() {
        let b = Budget::new(10, 3);
        let project = b.take(2).expect("free");
        assert_eq!(project.connections(), 7);
        let pair = b.take(2).expect("the reserve");
        assert_eq!(pair.connections(), 2, "one per child");
        let single = b.take(2).expect("what is left");
        assert_eq!(single.connections(), 1, "fewer than its children: the supervisor starts fewer");
        assert_eq!(b.granted(), 10);
        let spent = b.take(1).expect_err("nothing left");
        assert_eq!(spent, Spent { total: 10, held: 10 });
        assert!(spent.to_string().contains("connection-limit` = 10"), "{spent}");
        drop(pair);
        assert_eq!(b.granted(), 8);
        assert_eq!(b.take(1).expect("given back").connections(), 1);
        drop(project);
        // With the big part back, the next pool to start takes it (less the reserve).
        assert_eq!(b.take(1).expect("free again").connections(), 6);
    }

    #[test]
    fn without_a_reserve_a_second_pool_waits_for_the_first_to_stop() {
        let b = Budget::new(3, 0);
        let first = b.take(2).expect("free");
        assert_eq!(first.connections(), 3);
        assert!(b.take(1).is_err());
        drop(first);
        assert_eq!(b.granted(), 0);
        assert_eq!(b.take(1).expect("free again").connections(), 3);
    }

    #[test]
    fn the_on_demand_part_never_takes_the_whole() {
        let b = Budget::new(2, 5);
        assert_eq!(b.cap(), 1);
        assert_eq!(Budget::new(0, 0).total(), 1);
    }

    #[test]
    fn shares_add_up_to_the_part_and_each_child_gets_one_at_least() {
        for (connections, children) in [(8, 2), (7, 2), (3, 2), (10, 3), (1, 1), (5, 1)] {
            let shares: Vec<usize> = (0..children).map(|s| share(connections, children, s)).collect();
            assert_eq!(shares.iter().sum::<usize>(), connections, "{connections} over {children}: {shares:?}");
            assert!(shares.iter().all(|&n| n >= 1), "{shares:?}");
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1, "{shares:?}");
        }
    }
}
