//! MSB-first bit stream writer and reader used by the XOR encoding.
