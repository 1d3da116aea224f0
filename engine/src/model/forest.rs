//! Tree ensembles compiled for prediction.
//!
//! Every tree of an ensemble lives in one table of 16-byte nodes (four to a cache line), each
//! tree's nodes contiguous in depth-first, left-first order: a split's left child is the next
//! node, so only the right child is stored. A leaf's right child is the leaf itself and its left
//! offset is zero, so stepping from a leaf stays on it.
//!
//! One row ([`Forest::predict`]) walks each tree until its leaf. A batch
//! ([`Forest::predict_rows`]) goes through blocks of rows tree by tree and steps all rows of the
//! block together, a fixed number of branch-free steps per tree (the tree's depth, known when
//! it is compiled): the rows' dependent load chains overlap instead of running one after the
//! other, and no step waits on a mispredicted branch. A row that reached its leaf early keeps
//! stepping on the spot. Each row still adds the trees in order starting from the base score,
//! so a batch equals the one-row walk bit for bit.

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

/// Bits of [`CompiledNode::meta`] holding the split feature (zero for a leaf).
const FEATURE_MASK: u32 = (1 << 30) - 1;
/// [`CompiledNode::meta`] bit set on a split, clear on a leaf; it is also the left child's
/// offset from its parent (1 for a split, 0 for a leaf), hence bit 30 read as a number.
const SPLIT_SHIFT: u32 = 30;
/// [`CompiledNode::meta`] bit: a NaN goes left.
const DEFAULT_LEFT: u32 = 1 << 31;

/// One node: a split or a leaf.
#[derive(Debug, Clone, Copy)]
struct CompiledNode {
    /// Split threshold, or the leaf's value.
    value: f64,
    /// Split feature (bits 0..30), split flag (bit 30), default-left flag (bit 31).
    meta: u32,
    /// A split's right child; a leaf's own index.
    right: u32,
}

impl CompiledNode {
    #[inline(always)]
    fn is_split(self) -> bool {
        self.meta >> SPLIT_SHIFT & 1 == 1
    }

    /// The feature a split reads (0 for a leaf).
    #[inline(always)]
    fn feature(self) -> usize {
        (self.meta & FEATURE_MASK) as usize
    }

    /// The child a row goes to from node `at` (a leaf stays at `at`).
    #[inline(always)]
    fn next(self, at: usize, row: &[f64]) -> usize {
        self.next_for(at, row[self.feature()])
    }

    /// The child a row whose feature value is `x` goes to from node `at` (a leaf stays at
    /// `at`), without branches: the select compiles to a conditional move.
    #[inline(always)]
    fn next_for(self, at: usize, x: f64) -> usize {
        let nan_left = x.is_nan() & (self.meta & DEFAULT_LEFT != 0);
        let go_left = (x < self.value) | nan_left;
        let left = at + (self.meta >> SPLIT_SHIFT & 1) as usize;
        if go_left { left } else { self.right as usize }
    }
}

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
    /// Index of the root in [`Forest::nodes`].
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
    nodes: Box<[CompiledNode]>,
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

/// A node waiting to be compiled: its source index, its parent's index when it is a right
/// child (a left child needs no patch: it lands right after its parent), and the number of
/// nodes on the path from the root down to it.
type Pending = (usize, Option<usize>, usize);

impl Forest {
    /// Compiles validated trees (indices in range, every node reached once from node 0).
    pub(crate) fn compile(base_score: f64, objective: Objective, trees: &[Tree]) -> Forest {
        let total: usize = trees.iter().map(|t| t.nodes.len()).sum();
        let mut infos = Vec::with_capacity(trees.len());
        let mut nodes: Vec<CompiledNode> = Vec::with_capacity(total);
        let mut walk = 0usize;
        let mut stack: Vec<Pending> = Vec::new();
        for tree in trees {
            let root = to_u32(nodes.len());
            stack.push((0, None, 1));
            let mut longest = 1usize;
            while let Some((src, right_of, path)) = stack.pop() {
                longest = longest.max(path);
                let at = nodes.len();
                if let Some(parent) = right_of {
                    nodes[parent].right = to_u32(at);
                }
                match tree.nodes[src] {
                    Node::Split {
                        feature,
                        threshold,
                        left,
                        right,
                        default_left,
                    } => {
                        let mut meta = to_u32(feature) & FEATURE_MASK | 1 << SPLIT_SHIFT;
                        if default_left {
                            meta |= DEFAULT_LEFT;
                        }
                        nodes.push(CompiledNode {
                            value: threshold,
                            meta,
                            right: 0,
                        });
                        // Left popped first: it lands right after its parent.
                        stack.push((right, Some(at), path + 1));
                        stack.push((left, None, path + 1));
                    }
                    Node::Leaf { value } => nodes.push(CompiledNode {
                        value,
                        meta: 0,
                        right: to_u32(at),
                    }),
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
            nodes: nodes.into_boxed_slice(),
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
    fn eval(&self, mut at: usize, row: &[f64]) -> f64 {
        loop {
            let node = self.nodes[at];
            if !node.is_split() {
                return node.value;
            }
            at = node.next(at, row);
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
                    let node = self.nodes[at[lane]];
                    at[lane] = node.next_for(at[lane], columns[node.feature()][lane]);
                }
            }
            stepped += steps;
            if stepped < tree.depth && at.iter().all(|&at| !self.nodes[at].is_split()) {
                break;
            }
        }
        for (acc, at) in acc.iter_mut().zip(at) {
            *acc += self.nodes[at].value;
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
        // (node in `nodes`, position in the full tree)
        let mut stack = vec![(root as usize, 0usize)];
        while let Some((node, at)) = stack.pop() {
            let compiled = self.nodes[node];
            if at >= inner {
                self.level_leaves[leaves + at - inner] = compiled.value;
                continue;
            }
            let (left, right) = if compiled.is_split() {
                self.level_splits[splits + at] = LevelSplit {
                    threshold: compiled.value,
                    feature: to_u32(compiled.feature()),
                    default_left: compiled.meta & DEFAULT_LEFT != 0,
                };
                (node + 1, compiled.right as usize)
            } else {
                (node, node)
            };
            stack.push((right, 2 * at + 2));
            stack.push((left, 2 * at + 1));
        }
        self.trees[tree].level_splits = to_u32(splits);
        self.trees[tree].level_leaves = to_u32(leaves);
    }
}

/// Node and feature indices are bounded by validation (`MAX_TOTAL_NODES`, `MAX_FEATURES`).
fn to_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}
