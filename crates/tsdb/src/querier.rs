//! TODO
pub struct ChunkData {
    pub min_time: i64,
    pub max_time: i64,
    pub encoding: u8,
    pub data: std::sync::Arc<[u8]>,
}
