//! Nodes and the certificate inventory in etcd: one JSON record per key.

use etcd_client::{Compare, CompareOp, KeyValue, TxnOp, TxnOpResponse};

use super::{EtcdStore, decode, encode};
use crate::store::{CertificateRecord, NodeRecord, StoreError, UnixSeconds};

/// Deletes per transaction when pruning: well under etcd's default `--max-txn-ops` (128).
const DELETES_PER_TXN: usize = 100;

pub(super) async fn put_node(store: &EtcdStore, node: NodeRecord) -> Result<(), StoreError> {
    let put = TxnOp::put(store.keys.node(&node.name), encode(&node)?, None);
    store.write(vec![], vec![put], "write a node").await?;
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
    let delete = TxnOp::delete(store.keys.node(name), None);
    let response = store.write(vec![], vec![delete], "delete a node").await?;
    Ok(response.op_responses().iter().any(|r| match r {
        TxnOpResponse::Delete(deleted) => deleted.deleted() > 0,
        _ => false,
    }))
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
    let put = TxnOp::put(
        store.keys.certificate(&record.serial),
        encode(&record)?,
        None,
    );
    store
        .write(vec![], vec![put], "record a certificate")
        .await?;
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
        store.write(vec![], deletes, "prune certificates").await?;
    }
    Ok(expired.len())
}

/// Deletes the record unless it changed since it was read; whether it did.
pub(super) async fn delete_if_unchanged(
    store: &EtcdStore,
    kv: &KeyValue,
    action: &'static str,
) -> Result<bool, StoreError> {
    let unchanged = Compare::mod_revision(kv.key(), CompareOp::Equal, kv.mod_revision());
    let delete = TxnOp::delete(kv.key(), None);
    Ok(store
        .write(vec![unchanged], vec![delete], action)
        .await?
        .succeeded())
}
