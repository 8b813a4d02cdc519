package mfa

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/png"

	"github.com/pquerna/otp"
)

// qrSize is the QR code's width and height in pixels: large enough for a
// phone camera at arm's length, small enough for the page.
const qrSize = 256

// qrDataURL renders a key URI as a PNG QR code in a data: URL, so the page
// shows it without another request that would carry the seed.
func qrDataURL(key *otp.Key) (string, error) {
	img, err := key.Image(qrSize, qrSize)
	if err != nil {
		return "", fmt.Errorf("draw: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", fmt.Errorf("encode PNG: %w", err)
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}
