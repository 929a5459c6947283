//! How a task call reaches its repository's feed when a remote says how
//! (`db::Remote`'s transport): the HTTP client (the outbound policy's, with
//! the remote's own CA, TLS switch and proxy), how many downloads run at
//! once, and the pace of requests under the remote's rate limit, shared by
//! every call that uses the remote on this node.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Downloads `fetch-blobs` runs at once unless a remote says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// A feed's client and limits.
pub struct FeedTransport {
    pub http: reqwest::Client,
    /// Downloads at once.
    pub concurrency: usize,
    pace: Option<Pace>,
}

impl FeedTransport {
    /// A client builder for feeds: the outbound policy's, with the server's
    /// user agent and timeouts (a feed that goes silent mid-answer is given
    /// up on).
    pub fn client_builder(
        outbound: &Arc<crate::outbound::OutboundPolicy>,
    ) -> reqwest::ClientBuilder {
        outbound
            .client_builder()
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(crate::download::LIMITS.idle)
    }

    /// `http`, at most `concurrency` downloads at once and, with a
    /// `rate_limit`, at most that many requests a second.
    pub fn new(http: reqwest::Client, concurrency: usize, rate_limit: Option<u32>) -> Arc<Self> {
        Arc::new(FeedTransport {
            http,
            concurrency: concurrency.max(1),
            pace: rate_limit.filter(|r| *r > 0).map(|r| Pace {
                interval: Duration::from_secs(1) / r,
                next: tokio::sync::Mutex::new(Instant::now()),
            }),
        })
    }

    /// Wait until the rate limit lets one more request go.
    pub async fn turn(&self) {
        if let Some(p) = &self.pace {
            p.wait().await;
        }
    }
}

/// Requests spaced `interval` apart: each takes the next free slot.
struct Pace {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl Pace {
    async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_by_the_rate_limit() {
        let t = FeedTransport::new(reqwest::Client::new(), 8, Some(4));
        let start = Instant::now();
        let all = (0..9).map(|_| t.turn());
        futures::future::join_all(all).await;
        // The first goes at once, the eight others a quarter second apart.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        let free = FeedTransport::new(reqwest::Client::new(), 0, None);
        let start = Instant::now();
        futures::future::join_all((0..100).map(|_| free.turn())).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(free.concurrency, 1);
    }
}
