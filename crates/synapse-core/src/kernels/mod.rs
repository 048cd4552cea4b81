//! CPU kernels behind one dispatch point.
