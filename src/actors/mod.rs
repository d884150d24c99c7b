//! Pipeline stages (media, vision, prefill, decode, stream) connected by bounded mailboxes.
