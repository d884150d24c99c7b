//! The token trie of MindIE's memory decoding: every window of the prompts and outputs the
//! engine has seen, shared across requests, with a count per node. A draft continues the longest
//! recent context found in the trie along its most frequent children.

/// Context tokens matched before the continuation (longest first).
const MAX_KEY: usize = 4;

#[derive(Debug, Default, Clone)]
struct Node {
    /// (token, node index), in insertion order.
    children: Vec<(u32, u32)>,
    count: u32,
}

/// A bounded trie over token windows. When an insertion would pass `max_nodes` the trie starts
/// over (what it held was a cache, not state the output depends on).
#[derive(Debug, Clone)]
pub struct TokenTrie {
    nodes: Vec<Node>,
    max_nodes: usize,
    /// Longest window inserted: the context key plus the longest continuation.
    depth: usize,
}

impl TokenTrie {
    /// A trie holding at most `max_nodes` nodes, for continuations of up to `max_draft` tokens.
    pub fn new(max_nodes: usize, max_draft: usize) -> Self {
        TokenTrie {
            nodes: vec![Node::default()],
            max_nodes: max_nodes.max(2),
            depth: MAX_KEY + max_draft,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    fn child(&self, node: usize, token: u32) -> Option<usize> {
        self.nodes[node]
            .children
            .iter()
            .find(|&&(t, _)| t == token)
            .map(|&(_, n)| n as usize)
    }

    /// Insert every window of `tokens` (each of at most `depth` tokens).
    pub fn insert(&mut self, tokens: &[u32]) {
        let worst = tokens.len().saturating_mul(self.depth);
        if self.nodes.len().saturating_add(worst) > self.max_nodes {
            self.nodes.truncate(1);
            self.nodes[0] = Node::default();
            if worst >= self.max_nodes {
                // A text too long to hold whole: keep its end, the likeliest to recur soon.
                let keep = (self.max_nodes - 1) / self.depth;
                return self.insert(&tokens[tokens.len() - keep..]);
            }
        }
        for i in 0..tokens.len() {
            let mut node = 0;
            for &t in &tokens[i..(i + self.depth).min(tokens.len())] {
                node = match self.child(node, t) {
                    Some(n) => n,
                    None => {
                        let n = self.nodes.len();
                        self.nodes.push(Node::default());
                        self.nodes[node].children.push((t, n as u32));
                        n
                    }
                };
                self.nodes[node].count += 1;
            }
        }
    }

    /// Up to `k` tokens continuing `tokens`: the longest of its last 1..=4 tokens found in the
    /// trie, then the most frequent child at each step (the earliest inserted on a tie).
    pub fn draft(&self, tokens: &[u32], k: usize) -> Vec<u32> {
        for m in (1..=MAX_KEY.min(tokens.len())).rev() {
            let mut node = Some(0);
            for &t in &tokens[tokens.len() - m..] {
                node = node.and_then(|n| self.child(n, t));
            }
            let Some(mut node) = node else { continue };
            let mut out = Vec::new();
            while out.len() < k {
                let best = self.nodes[node]
                    .children
                    .iter()
                    .max_by_key(|&&(_, n)| (self.nodes[n as usize].count, std::cmp::Reverse(n)));
                let Some(&(t, n)) = best else { break };
                out.push(t);
                node = n as usize;
            }
            if !out.is_empty() {
                return out;
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_follow_the_most_frequent_continuation() {
        let mut t = TokenTrie::new(10_000, 8);
        t.insert(&[1, 2, 3, 4, 5]);
        t.insert(&[9, 2, 3, 7, 8]);
        t.insert(&[6, 2, 3, 7, 8]);
        // "2 3" was followed by 7 8 twice and by 4 5 once.
        assert_eq!(t.draft(&[0, 2, 3], 2), vec![7, 8]);
        // The longer key "1 2 3" pins the first continuation.
        assert_eq!(t.draft(&[1, 2, 3], 2), vec![4, 5]);
        assert_eq!(t.draft(&[1, 2, 3], 1), vec![4]);
        assert!(t.draft(&[42], 3).is_empty());
        assert!(t.draft(&[], 3).is_empty());
    }

    #[test]
    fn the_trie_stays_within_its_bound() {
        let mut t = TokenTrie::new(500, 4);
        for r in 0..50u32 {
            let seq: Vec<u32> = (0..40).map(|i| r * 1000 + i).collect();
            t.insert(&seq);
            assert!(t.len() <= 500, "{}", t.len());
        }
        // The latest text is still there.
        assert_eq!(t.draft(&[49_000, 49_001], 2), vec![49_002, 49_003]);
        // A text longer than the whole trie keeps its end.
        let long: Vec<u32> = (0..10_000).collect();
        t.insert(&long);
        assert!(t.len() <= 500);
        assert_eq!(t.draft(&[9_996], 2), vec![9_997, 9_998]);
    }
}
