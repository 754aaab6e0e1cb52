//! Nodes and the certificate inventory in etcd: one JSON record per key.

use etcd_client::{Compare, CompareOp, DeleteOptions, Txn, TxnOp};

use super::{EtcdStore, backend, decode, encode};
use crate::store::{CertificateRecord, NodeRecord, StoreError, UnixSeconds};

/// Deletes per transaction when pruning: well under etcd's default `--max-txn-ops` (128).
const DELETES_PER_TXN: usize = 100;

pub(super) async fn put_node(store: &EtcdStore, node: NodeRecord) -> Result<(), StoreError> {
    let value = encode(&node)?;
    store
        .client()
        .put(store.keys.node(&node.name), value, None)
        .await
        .map_err(backend("write a node"))?;
    Ok(())
}

pub(super) async fn get_node(
    store: &EtcdStore,
    name: &str,
) -> Result<Option<NodeRecord>, StoreError> {
    store
        .get(&store.keys.node(name), "read a node")
        .await?
        .map(|kv| decode("nodes", &kv))
        .transpose()
}

pub(super) async fn delete_node(store: &EtcdStore, name: &str) -> Result<bool, StoreError> {
    let response = store
        .client()
        .delete(store.keys.node(name), Some(DeleteOptions::new()))
        .await
        .map_err(backend("delete a node"))?;
    Ok(response.deleted() > 0)
}

pub(super) async fn list_nodes(store: &EtcdStore) -> Result<Vec<NodeRecord>, StoreError> {
    let mut nodes: Vec<NodeRecord> = store
        .list(&store.keys.nodes(), "list nodes")
        .await?
        .iter()
        .map(|kv| decode("nodes", kv))
        .collect::<Result<_, _>>()?;
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

pub(super) async fn record_certificate(
    store: &EtcdStore,
    record: CertificateRecord,
) -> Result<(), StoreError> {
    let value = encode(&record)?;
    store
        .client()
        .put(store.keys.certificate(&record.serial), value, None)
        .await
        .map_err(backend("record a certificate"))?;
    Ok(())
}

pub(super) async fn get_certificate(
    store: &EtcdStore,
    serial: &str,
) -> Result<Option<CertificateRecord>, StoreError> {
    store
        .get(&store.keys.certificate(serial), "read a certificate")
        .await?
        .map(|kv| decode("certificates", &kv))
        .transpose()
}

pub(super) async fn list_certificates(
    store: &EtcdStore,
    node: Option<&str>,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let mut records: Vec<CertificateRecord> = store
        .list(&store.keys.certificates(), "list certificates")
        .await?
        .iter()
        .map(|kv| decode("certificates", kv))
        .filter(|r: &Result<CertificateRecord, _>| {
            r.as_ref()
                .map_or(true, |r| node.is_none_or(|n| r.node == n))
        })
        .collect::<Result<_, _>>()?;
    records.sort_by(|a, b| (a.not_after, &a.serial).cmp(&(b.not_after, &b.serial)));
    Ok(records)
}

pub(super) async fn prune_certificates(
    store: &EtcdStore,
    before: UnixSeconds,
) -> Result<usize, StoreError> {
    let expired: Vec<Vec<u8>> = store
        .list(&store.keys.certificates(), "list certificates")
        .await?
        .iter()
        .filter_map(|kv| match decode::<CertificateRecord>("certificates", kv) {
            Ok(record) if record.not_after < before => Some(Ok(kv.key().to_vec())),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    for chunk in expired.chunks(DELETES_PER_TXN) {
        let deletes: Vec<TxnOp> = chunk
            .iter()
            .map(|k| TxnOp::delete(k.clone(), None))
            .collect();
        store
            .txn(Txn::new().and_then(deletes), "prune certificates")
            .await?;
    }
    Ok(expired.len())
}

/// Deletes `key` only if it was not modified since `mod_revision`; whether it did.
pub(super) fn delete_if_unchanged(key: &[u8], mod_revision: i64) -> Txn {
    Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
        .and_then([TxnOp::delete(key, None)])
}
