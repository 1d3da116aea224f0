//! RFC 6962 (RFC 9162 §2.1) Merkle tree hashing: leaves prefixed `0x00`, nodes `0x01`, SHA-256.
//!
//! [`MerkleTree`] keeps every complete subtree's hash (about 64 bytes per leaf), so an
//! inclusion or consistency proof costs O(log² n) hashes at most and no disk read.
//! [`CompactRange`] keeps only the O(log n) hashes of the right edge: the verifier's
//! streaming root computation.

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index is not below the tree size.
    #[error("failed to prove inclusion: index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// A tree size beyond the log, or sizes out of order.
    #[error("failed to prove: size {size} is out of range (the log holds {len} records)")]
    SizeOutOfRange {
        /// The size asked for.
        size: u64,
        /// Records in the log.
        len: u64,
    },
    /// A consistency proof asked from a larger to a smaller tree.
    #[error("failed to prove consistency: first size {first} is above second size {second}")]
    SizesOutOfOrder {
        /// The first size.
        first: u64,
        /// The second size.
        second: u64,
    },
    /// The proof has the wrong number of hashes for the sizes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The proof recomputes to a different root.
    #[error("proof does not match the root")]
    RootMismatch,
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// A Merkle tree over an append-only sequence of leaf hashes.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    /// `levels[k][j]`: the hash of the complete subtree over leaves `[j·2^k, (j+1)·2^k)`.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> MerkleTree {
        MerkleTree::default()
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf hash, completing every subtree it closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            if row.len() % 2 == 1 {
                return;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
    }

    /// The leaf hash at `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
    }

    /// `MTH(D[start:end])`, for the ranges RFC 6962's recursion visits (`start` aligned to the
    /// largest power of two below `end - start`, or the range complete).
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let k = n.trailing_zeros() as usize;
            return self.levels[k][(start >> k) as usize];
        }
        let k = split(n);
        node_hash(
            &self.range_hash(start, start + k),
            &self.range_hash(start + k, end),
        )
    }

    /// The root over the first `size` leaves.
    ///
    /// # Errors
    /// [`ProofError::SizeOutOfRange`] when `size` exceeds the tree.
    pub fn root(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(if size == 0 {
            empty_root()
        } else {
            self.range_hash(0, size)
        })
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.len() {
            return Err(ProofError::SizeOutOfRange {
                size,
                len: self.len(),
            });
        }
        Ok(())
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 6962 §2.1.1).
    ///
    /// # Errors
    /// [`ProofError`] when `index >= size` or `size` exceeds the tree.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::with_capacity(64);
        let (mut start, mut end, mut m) = (0, size, index);
        // Walk down, collecting siblings top-first; the path is listed leaf-first.
        while end - start > 1 {
            let k = split(end - start);
            if m < k {
                proof.push(self.range_hash(start + k, end));
                end = start + k;
            } else {
                proof.push(self.range_hash(start, start + k));
                start += k;
                m -= k;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    /// The consistency proof between the trees of the first `first` and `second` leaves
    /// (RFC 6962 §2.1.2).
    ///
    /// # Errors
    /// [`ProofError`] when the sizes are out of order or exceed the tree.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(second)?;
        if first > second {
            return Err(ProofError::SizesOutOfOrder { first, second });
        }
        let mut proof = Vec::new();
        if first == 0 || first == second {
            return Ok(proof);
        }
        let (mut start, mut end, mut m, mut whole) = (0, second, first, true);
        while m != end - start {
            let k = split(end - start);
            if m <= k {
                proof.push(self.range_hash(start + k, end));
                end = start + k;
            } else {
                proof.push(self.range_hash(start, start + k));
                start += k;
                m -= k;
                whole = false;
            }
        }
        if !whole {
            proof.push(self.range_hash(start, end));
        }
        proof.reverse();
        Ok(proof)
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
///
/// # Errors
/// [`ProofError`] saying why it failed.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if !ct_eq(&r, root) {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
///
/// # Errors
/// [`ProofError`] saying why it failed.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if first == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((&head, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (head, head);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if !(ct_eq(&fr, first_root) & ct_eq(&sr, second_root)) {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Constant-time equality of two hashes (a root is public, but a check that leaks where two
/// digests differ is a habit not worth having).
pub(crate) fn ct_eq(a: &Hash, b: &Hash) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The right edge of a tree: one hash per set bit of its size, enough to extend it and to
/// compute its root, in O(log n) memory. The verifier streams leaves through one.
#[derive(Debug, Clone, Default)]
pub struct CompactRange {
    size: u64,
    /// Hashes of the complete subtrees, largest (leftmost) first.
    stack: Vec<Hash>,
}

impl CompactRange {
    /// An empty range.
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// Leaves appended so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether no leaf was appended.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.stack.pop().unwrap_or_default();
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.stack.push(hash);
        self.size += 1;
    }

    /// The root over every leaf appended so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&last) = iter.next() else {
            return empty_root();
        };
        iter.fold(last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from transparency-dev/merkle `proof/verify_test.go` (the RFC 6962 reference
    //! vectors of certificate-transparency-go): leaves, roots of sizes 1 to 8, and proofs.
    use super::*;
    use crate::audit::hex;

    fn h(s: &str) -> Hash {
        hex::decode32(s).unwrap()
    }

    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    /// (leaf number, 1-based; tree size; proof)
    const INCLUSION: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            3,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            2,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn tree() -> MerkleTree {
        let mut t = MerkleTree::new();
        for leaf in LEAVES {
            t.push(leaf_hash(&hex::decode(leaf).unwrap()));
        }
        t
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            MerkleTree::new().root(0).unwrap(),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(CompactRange::new().root(), empty_root());
    }

    #[test]
    fn roots_match_the_vectors_for_every_size_up_to_eight() {
        let t = tree();
        let mut compact = CompactRange::new();
        for (size, want) in (1..=8).zip(ROOTS) {
            assert_eq!(t.root(size).unwrap(), h(want), "size {size}");
            compact.push(t.leaf(size - 1).unwrap());
            assert_eq!(compact.root(), h(want), "compact size {size}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_vectors_and_verify() {
        let t = tree();
        for (leaf, size, proof) in INCLUSION {
            let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
            let index = leaf - 1;
            assert_eq!(
                t.inclusion_proof(index, size).unwrap(),
                want,
                "{leaf}/{size}"
            );
            let root = h(ROOTS[size as usize - 1]);
            let lh = t.leaf(index).unwrap();
            verify_inclusion(index, size, &lh, &want, &root).unwrap();
            // Corruptions of the vector proof must fail (as the Go tests' probes).
            assert!(verify_inclusion(index + 1, size, &lh, &want, &root).is_err());
            assert!(verify_inclusion(index, size * 2, &lh, &want, &root).is_err());
            assert!(verify_inclusion(index, size, &empty_root(), &want, &root).is_err());
            let mut longer = want.clone();
            longer.push(root);
            assert!(verify_inclusion(index, size, &lh, &longer, &root).is_err());
            for i in 0..want.len() {
                let mut bad = want.clone();
                bad[i][0] ^= 8;
                assert!(verify_inclusion(index, size, &lh, &bad, &root).is_err());
            }
            if !want.is_empty() {
                let short = &want[..want.len() - 1];
                assert!(verify_inclusion(index, size, &lh, short, &root).is_err());
            }
        }
    }

    #[test]
    fn consistency_proofs_match_the_vectors_and_verify() {
        let t = tree();
        for (first, second, proof) in CONSISTENCY {
            let want: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
            assert_eq!(
                t.consistency_proof(first, second).unwrap(),
                want,
                "{first}->{second}"
            );
            let r1 = h(ROOTS[first as usize - 1]);
            let r2 = h(ROOTS[second as usize - 1]);
            verify_consistency(first, second, &r1, &r2, &want).unwrap();
            if want.is_empty() {
                continue;
            }
            assert!(verify_consistency(first, second, &r2, &r1, &want).is_err());
            assert!(verify_consistency(first - 1, second, &r1, &r2, &want).is_err());
            assert!(verify_consistency(first, second * 2, &r1, &r2, &want).is_err());
            assert!(verify_consistency(first, second, &r1, &r2, &[]).is_err());
            assert!(verify_consistency(first, second, &r1, &r2, &want[..want.len() - 1]).is_err());
            for i in 0..want.len() {
                let mut bad = want.clone();
                bad[i][0] ^= 16;
                assert!(verify_consistency(first, second, &r1, &r2, &bad).is_err());
            }
        }
    }

    #[test]
    fn every_proof_of_a_larger_tree_verifies() {
        let mut t = MerkleTree::new();
        for i in 0u32..67 {
            t.push(leaf_hash(&i.to_le_bytes()));
        }
        for size in 1..=67 {
            let root = t.root(size).unwrap();
            for index in 0..size {
                let p = t.inclusion_proof(index, size).unwrap();
                verify_inclusion(index, size, &t.leaf(index).unwrap(), &p, &root).unwrap();
            }
            for first in 0..=size {
                let p = t.consistency_proof(first, size).unwrap();
                verify_consistency(first, size, &t.root(first).unwrap(), &root, &p).unwrap();
            }
        }
        assert!(matches!(
            t.inclusion_proof(67, 67),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        assert!(matches!(t.root(68), Err(ProofError::SizeOutOfRange { .. })));
    }
}
