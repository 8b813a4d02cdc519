package server_test

import (
	"os"
	"testing"

	"github.com/smartauth/smartauth/server/browsertest"
)

// TestMain shares one Chromium among the package's browser tests, each in
// a browser context of its own: starting a browser per test was the step
// that failed on a loaded machine.
func TestMain(m *testing.M) { os.Exit(browsertest.Main(m)) }
