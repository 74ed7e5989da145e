// Package delta applies and creates delta images in detools' patch format
// (github.com/eerimoq/detools), so that an ECU bootloader built with
// detools' C library applies what this package creates, and this package
// applies what detools creates.
//
// A sequential patch is a header (Header: type, compression, new image
// size) followed by compressed patch data: bsdiff-style triples of a diff
// block added bytewise to the old image, an extra block copied as is, and a
// signed adjustment of the position in the old image. Apply streams it: old
// image through an io.ReaderAt, patch through an io.Reader, new image to an
// io.Writer, with working memory bounded by Options.MaxMemory and
// independent of the image sizes. ApplyInPlace applies detools' in-place
// patches to a single flash region. ApplyEnvelope adds the project's
// envelope around a patch: the SHA-256 of the base and target images, so a
// patch is never applied to the wrong base and its output is verified.
//
// Create makes sequential patches: a suffix array (SA-IS) of the old image,
// bsdiff-style chunking with match selection tuned for small patches, and
// the project's own LZMA encoder and optimal-parse heatshrink encoder, with
// a small LZMA dictionary by default (DefaultLZMADictCap) because the ECU
// must hold it in RAM. Its output depends only on its inputs.
//
// The applier must never panic on patch bytes, never write past the new
// image's declared size and never allocate according to a size the patch
// declares. Malformed patches give the errors in format.go; DetoolsMessage
// maps them to the messages detools prints for the same fault.
package delta
