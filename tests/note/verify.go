// note-verify opens a signed note with golang.org/x/mod/sumdb/note, the Go
// reference implementation of c2sp.org/signed-note, as an independent check
// of the notes forge-sidecar writes.
//
// Usage: note-verify VERIFIER_KEY NOTE_FILE
// Prints the note's text and the names of the verified signers; exits 1 if
// the note does not verify.
package main

import (
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: note-verify VERIFIER_KEY NOTE_FILE")
		os.Exit(2)
	}
	verifier, err := note.NewVerifier(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad verifier key:", err)
		os.Exit(2)
	}
	msg, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fmt.Fprintln(os.Stderr, "note does not verify:", err)
		os.Exit(1)
	}
	fmt.Print(n.Text)
	for _, s := range n.Sigs {
		fmt.Printf("signed by %s %08x\n", s.Name, s.Hash)
	}
}
