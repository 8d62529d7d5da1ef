//! Following one kind of object from the API server: a kube-runtime watcher that keeps a
//! reflector store and says what each event means to Gantry. The scheduler and the admission
//! webhook follow objects the same way.

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use std::fmt::Debug;
use std::hash::Hash;

/// What a watch event means to Gantry, for one kind of object.
pub enum Change<K> {
    Applied(K),
    Deleted(K),
    /// A full list arrived; `true` after the first one (a relist: deletions may have been missed).
    Listed(bool),
}

/// A watcher of `api` that keeps `writer`'s store and yields changes (errors are logged and the
/// watch retried with backoff).
pub fn follow<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    strip: fn(&mut K),
) -> impl Stream<Item = Change<K>>
where
    K: Resource + Clone + Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let mut listed = false;
    watcher(api, watcher::Config::default()).modify(strip).reflect(writer).default_backoff().filter_map(
        move |event| {
            let change = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => Some(Change::Applied(o)),
                Ok(watcher::Event::Delete(o)) => Some(Change::Deleted(o)),
                Ok(watcher::Event::InitDone) => Some(Change::Listed(std::mem::replace(&mut listed, true))),
                Ok(watcher::Event::Init) => None,
                Err(e) => {
                    tracing::warn!("watching {}: {e}; retrying", K::kind(&Default::default()));
                    None
                }
            };
            std::future::ready(change)
        },
    )
}
