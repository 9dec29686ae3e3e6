//! OKX v5 public market data: wire parsing ([`parse`]) and the `seqId`/`prevSeqId` book
//! continuity with resubscription on a gap ([`feed::OkxFeed`]).

pub mod feed;
pub mod parse;
