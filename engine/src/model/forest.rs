//! Tree ensembles compiled for prediction.
//!
//! Every tree of an ensemble lives in one struct-of-arrays node table, each tree's nodes
//! contiguous in depth-first, left-first order so the common left path is a sequential read.
//! A leaf's children are the leaf itself, so stepping from a leaf stays on it.
//!
//! One row ([`Forest::predict`]) walks each tree until its leaf, with a branch per split: on
//! the one-row path a predicted branch lets the CPU run ahead. A batch
//! ([`Forest::predict_rows`]) goes through blocks of rows tree by tree and steps all rows of the
//! block together, a fixed number of branch-free steps per tree (the tree's depth, known when
//! it is compiled): the rows' dependent load chains overlap instead of running one after the
//! other, and no step waits on a mispredicted branch. Shallow trees are stepped in a
//! level-order copy that needs no child links. Each row still adds the trees in order starting
//! from the base score, so a batch equals the one-row walk bit for bit.

use super::sigmoid;
use crate::artifact::{Node, Objective, Tree};

/// Rows stepped together through a tree in [`Forest::predict_rows`]; picked by measurement
/// (`engine/benches/README.md`, `predict_batch/lanes_*`).
pub(crate) const LANES: usize = 16;

/// Trees at most this deep are stepped exactly `depth` times. Deeper trees step in rounds of
/// [`ROUND_STEPS`] and stop once every row of the block is at a leaf, so a deep but unbalanced
/// tree (`MAX_TREE_NODES` allows a chain of a million splits) costs the block's longest path,
/// not the tree's.
const FIXED_DEPTH_MAX: u32 = 16;

/// Steps between two checks for "every row is at a leaf" in a tree deeper than
/// [`FIXED_DEPTH_MAX`].
const ROUND_STEPS: u32 = 8;

/// Sentinel in [`Forest::feature`] marking a leaf.
const LEAF: u32 = u32::MAX;

/// A split of a tree's level-order copy.
#[derive(Debug, Clone, Copy)]
struct LevelSplit {
    threshold: f64,
    feature: u32,
    /// Whether a NaN goes left.
    default_left: bool,
}

/// [`TreeInfo::level_splits`] of a tree with no level-order copy.
const NOT_LEVELLED: u32 = u32::MAX;

/// Trees at most this deep get a level-order copy (when it is small, see
/// [`LEVEL_GROWTH_MAX`]): a full tree has `2^depth` leaves.
const LEVEL_DEPTH_MAX: u32 = 10;

/// Largest size of a tree's level-order copy, in nodes, as a multiple of the tree's own
/// nodes: a sparse tree (a chain, say) would be mostly padding, and is walked instead.
const LEVEL_GROWTH_MAX: usize = 4;

/// Where a tree starts and how deep it goes.
#[derive(Debug, Clone, Copy)]
struct TreeInfo {
    /// Index of the root in the node table.
    root: u32,
    /// Splits on the longest root-to-leaf path.
    depth: u32,
    /// Index of the tree's first split in [`Forest::level_splits`], or [`NOT_LEVELLED`].
    level_splits: u32,
    /// Index of the tree's first leaf in [`Forest::level_leaves`].
    level_leaves: u32,
}

/// A compiled tree ensemble.
pub(crate) struct Forest {
    base_score: f64,
    logistic: bool,
    trees: Vec<TreeInfo>,
    /// Split feature, or [`LEAF`].
    feature: Box<[u32]>,
    /// Split threshold, or the leaf's value.
    value: Box<[f64]>,
    /// Children `[left, right]` of a split; a leaf's are itself.
    children: Box<[[u32; 2]]>,
    /// Whether a NaN goes left.
    default_left: Box<[bool]>,
    /// Shallow trees again, each as a full tree in level order (heap order): a batch steps
    /// from split `i` to `2i + 1 + right` and needs no child links; the node at the last
    /// step's position is a leaf.
    level_splits: Vec<LevelSplit>,
    /// The leaves of the level-order copies, `2^depth` per tree.
    level_leaves: Vec<f64>,
    /// Most nodes one row visits: the sum over trees of the nodes on the tree's longest
    /// root-to-leaf path.
    pub(crate) walk: usize,
}

/// A node waiting to be compiled: its source index, the slot in `children` of its parent to
/// patch (parent, side), and the number of nodes on the path from the root down to it.
type Pending = (usize, Option<(usize, usize)>, usize);

impl Forest {
    /// Compiles validated trees (indices in range, every node reached once from node 0).
    pub(crate) fn compile(base_score: f64, objective: Objective, trees: &[Tree]) -> Forest {
        let total: usize = trees.iter().map(|t| t.nodes.len()).sum();
        let mut infos = Vec::with_capacity(trees.len());
        let mut feature = Vec::with_capacity(total);
        let mut value = Vec::with_capacity(total);
        let mut children: Vec<[u32; 2]> = Vec::with_capacity(total);
        let mut default_left = Vec::with_capacity(total);
        let mut walk = 0usize;
        let mut stack: Vec<Pending> = Vec::new();
        for tree in trees {
            let root = to_u32(feature.len());
            stack.push((0, None, 1));
            let mut longest = 1usize;
            while let Some((src, parent, path)) = stack.pop() {
                longest = longest.max(path);
                let at = feature.len();
                if let Some((p, side)) = parent {
                    children[p][side] = to_u32(at);
                }
                match tree.nodes[src] {
                    Node::Split {
                        feature: f,
                        threshold,
                        left,
                        right,
                        default_left: dl,
                    } => {
                        feature.push(to_u32(f));
                        value.push(threshold);
                        children.push([0, 0]);
                        default_left.push(dl);
                        // Left popped first: it lands right after its parent.
                        stack.push((right, Some((at, 1)), path + 1));
                        stack.push((left, Some((at, 0)), path + 1));
                    }
                    Node::Leaf { value: v } => {
                        feature.push(LEAF);
                        value.push(v);
                        children.push([to_u32(at); 2]);
                        default_left.push(false);
                    }
                }
            }
            infos.push(TreeInfo {
                root,
                depth: to_u32(longest - 1),
                level_splits: NOT_LEVELLED,
                level_leaves: 0,
            });
            walk = walk.saturating_add(longest);
        }
        let mut forest = Forest {
            base_score,
            logistic: objective == Objective::BinaryLogistic,
            trees: infos,
            feature: feature.into_boxed_slice(),
            value: value.into_boxed_slice(),
            children: children.into_boxed_slice(),
            default_left: default_left.into_boxed_slice(),
            level_splits: Vec::new(),
            level_leaves: Vec::new(),
            walk,
        };
        for (i, tree) in trees.iter().enumerate() {
            let depth = forest.trees[i].depth;
            if depth <= LEVEL_DEPTH_MAX
                && (2usize << depth) - 1 <= LEVEL_GROWTH_MAX * tree.nodes.len()
            {
                forest.level(i);
            }
        }
        forest.level_splits.shrink_to_fit();
        forest.level_leaves.shrink_to_fit();
        forest
    }

    /// Predicts one row, walking each tree to its leaf.
    #[inline]
    pub(crate) fn predict(&self, row: &[f64]) -> f64 {
        let mut raw = self.base_score;
        for tree in self.trees.iter() {
            raw += self.eval(tree.root as usize, row);
        }
        self.link(raw)
    }

    #[inline]
    fn eval(&self, mut i: usize, row: &[f64]) -> f64 {
        loop {
            let f = self.feature[i];
            let v = self.value[i];
            if f == LEAF {
                return v;
            }
            let x = row[f as usize];
            let go_left = x < v || (x.is_nan() && self.default_left[i]);
            i = self.children[i][usize::from(!go_left)] as usize;
        }
    }

    #[inline(always)]
    fn link(&self, raw: f64) -> f64 {
        if self.logistic { sigmoid(raw) } else { raw }
    }

    /// Predicts the row-major `rows` of `n` features each into `out` (`rows.len()` must be
    /// `out.len() * n`): blocks of [`LANES`] rows stepped together, the remaining rows walked
    /// one by one. Equals [`Forest::predict`] on each row, bit for bit.
    pub(crate) fn predict_rows(&self, rows: &[f64], n: usize, out: &mut [f64]) {
        self.predict_rows_lanes::<LANES>(rows, n, out);
    }

    /// [`Forest::predict_rows`] with `L` rows to a block.
    pub(crate) fn predict_rows_lanes<const L: usize>(
        &self,
        rows: &[f64],
        n: usize,
        out: &mut [f64],
    ) {
        debug_assert_eq!(rows.len(), out.len() * n, "rows must hold out.len() rows");
        let mut blocks = rows.chunks_exact(n * L);
        let mut outs = out.chunks_exact_mut(L);
        // The block transposed: `columns[f][l]` is feature `f` of the block's row `l`, so a
        // step reads one slice whose lane index is known to be in bounds.
        let mut columns = vec![[0.0; L]; n];
        for (block, out) in (&mut blocks).zip(&mut outs) {
            let mut nan = false;
            for (l, row) in block.chunks_exact(n).enumerate() {
                for (column, &x) in columns.iter_mut().zip(row) {
                    column[l] = x;
                    nan |= x.is_nan();
                }
            }
            let mut acc = [self.base_score; L];
            // A block without NaN (the usual case: the sanitiser imputes) skips the
            // default-left test in every step.
            if nan {
                self.add_trees::<L, true>(&columns, &mut acc);
            } else {
                self.add_trees::<L, false>(&columns, &mut acc);
            }
            for (out, raw) in out.iter_mut().zip(acc) {
                *out = self.link(raw);
            }
        }
        for (row, out) in blocks
            .remainder()
            .chunks_exact(n)
            .zip(outs.into_remainder())
        {
            *out = self.predict(row);
        }
    }

    /// Adds every tree's leaf to each row's sum, in tree order; `NAN` says whether a row may
    /// hold a NaN.
    #[inline(always)]
    fn add_trees<const L: usize, const NAN: bool>(&self, columns: &[[f64; L]], acc: &mut [f64; L]) {
        for tree in self.trees.iter() {
            if tree.level_splits == NOT_LEVELLED {
                self.add_walked_tree::<L>(tree, columns, acc);
            } else {
                self.add_levelled_tree::<L, NAN>(tree, columns, acc);
            }
        }
    }

    /// One tree in its level-order copy: `depth` steps from `i` to `2i + 1 + right`.
    #[inline(always)]
    fn add_levelled_tree<const L: usize, const NAN: bool>(
        &self,
        tree: &TreeInfo,
        columns: &[[f64; L]],
        acc: &mut [f64; L],
    ) {
        let inner = (1usize << tree.depth) - 1;
        let first = tree.level_splits as usize;
        let splits = &self.level_splits[first..first + inner];
        let first = tree.level_leaves as usize;
        let leaves = &self.level_leaves[first..first + inner + 1];
        let mut at = [0usize; L];
        for _ in 0..tree.depth {
            for lane in 0..L {
                let split = splits[at[lane]];
                let x = columns[split.feature as usize][lane];
                #[expect(
                    clippy::neg_cmp_op_on_partial_ord,
                    reason = "a NaN fails `x < t`: it goes right unless the split sends it left"
                )]
                let mut right = !(x < split.threshold);
                if NAN {
                    right &= !(x.is_nan() & split.default_left);
                }
                at[lane] = 2 * at[lane] + 1 + usize::from(right);
            }
        }
        for (acc, at) in acc.iter_mut().zip(at) {
            *acc += leaves[at - inner];
        }
    }

    /// One tree in the depth-first table: rows that reach a leaf early stay on it; a tree
    /// deeper than [`FIXED_DEPTH_MAX`] stops once every row has.
    #[inline(always)]
    fn add_walked_tree<const L: usize>(
        &self,
        tree: &TreeInfo,
        columns: &[[f64; L]],
        acc: &mut [f64; L],
    ) {
        let mut at = [tree.root as usize; L];
        let round = if tree.depth <= FIXED_DEPTH_MAX {
            tree.depth
        } else {
            ROUND_STEPS
        };
        let mut stepped = 0;
        while stepped < tree.depth {
            let steps = round.min(tree.depth - stepped);
            for _ in 0..steps {
                for lane in 0..L {
                    let i = at[lane];
                    // A leaf reads no feature: any value keeps it on itself.
                    let x = columns
                        .get(self.feature[i] as usize)
                        .map_or(0.0, |column| column[lane]);
                    let go_left = (x < self.value[i]) | (x.is_nan() & self.default_left[i]);
                    at[lane] = self.children[i][usize::from(!go_left)] as usize;
                }
            }
            stepped += steps;
            if stepped < tree.depth && at.iter().all(|&i| self.feature[i] == LEAF) {
                break;
            }
        }
        for (acc, at) in acc.iter_mut().zip(at) {
            *acc += self.value[at];
        }
    }

    /// Copies tree `tree` (its depth-first nodes from `root`) in level order: the splits of a
    /// full tree of its depth, node `i`'s children at `2i + 1` and `2i + 2`, then its leaves.
    /// A leaf above the last level becomes a split whose two subtrees both end in copies of
    /// it, so either way a row goes it lands on the leaf's value.
    fn level(&mut self, tree: usize) {
        let TreeInfo { root, depth, .. } = self.trees[tree];
        let inner = (1usize << depth) - 1;
        let splits = self.level_splits.len();
        let leaves = self.level_leaves.len();
        self.level_splits.resize(
            splits + inner,
            LevelSplit {
                threshold: 0.0,
                feature: 0,
                default_left: false,
            },
        );
        self.level_leaves.resize(leaves + inner + 1, 0.0);
        // (node in the depth-first table, position in the full tree)
        let mut stack = vec![(root as usize, 0usize)];
        while let Some((node, at)) = stack.pop() {
            if at >= inner {
                self.level_leaves[leaves + at - inner] = self.value[node];
                continue;
            }
            if self.feature[node] != LEAF {
                self.level_splits[splits + at] = LevelSplit {
                    threshold: self.value[node],
                    feature: self.feature[node],
                    default_left: self.default_left[node],
                };
            }
            // A leaf's children are itself: it is copied down to the last level.
            let [left, right] = self.children[node];
            stack.push((right as usize, 2 * at + 2));
            stack.push((left as usize, 2 * at + 1));
        }
        self.trees[tree].level_splits = to_u32(splits);
        self.trees[tree].level_leaves = to_u32(leaves);
    }
}

/// Node and feature indices are bounded by validation (`MAX_TOTAL_NODES`, `MAX_FEATURES`).
fn to_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}
