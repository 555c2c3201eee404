//! The paper's networks: the CIFAR-10 net, the Short-chunk CNN, and the heads
//! they share.

pub mod cifar_net;
pub mod heads;
pub mod short_chunk;

pub use cifar_net::{CifarConfig, CifarNet};
pub use heads::{Head, HeadDims, HeadKind};
pub use short_chunk::{ShortChunkCnn, ShortChunkConfig};
