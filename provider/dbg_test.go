package provider

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func dumpTranscripts(b *testing.B, state string) {
	filepath.Walk(filepath.Join(state, "transcripts"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		data, _ := os.ReadFile(p)
		var keep []string
		for _, l := range strings.Split(string(data), "\n") {
			if !strings.Contains(l, "TransferData") {
				keep = append(keep, l)
			}
		}
		b.Logf("== %s\n%s", p, strings.Join(keep, "\n"))
		return nil
	})
}
