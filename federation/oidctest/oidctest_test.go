package oidctest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

const callback = "https://rp.example/callback"

var alice = Person{ID: "sub-alice", Username: "alice", Password: "pw-alice", Email: "alice@example.org", EmailVerified: true}

func TestLoginAndAMR(t *testing.T) {
	for _, shape := range []string{ShapePlain, ShapeCognito, ShapeOkta} {
		t.Run(shape, func(t *testing.T) {
			p := Start(t, Options{Shape: shape, RedirectURIs: []string{callback}, People: []Person{alice}, AMR: []string{"pwd", "mfa"}})
			conf := oauth2.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, RedirectURL: callback, Scopes: []string{"openid"},
				Endpoint: oauth2.Endpoint{AuthURL: p.Issuer() + "/authorize", TokenURL: p.Issuer() + "/oauth/token"}}
			// A client that would follow redirects by itself: Login must
			// still stop at the redirect back.
			jar, err := cookiejar.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			back := p.Login(t, &http.Client{Jar: jar}, conf.AuthCodeURL("st4te"), alice.Username, alice.Password)
			if !strings.HasPrefix(back.String(), callback+"?") || back.Query().Get("state") != "st4te" {
				t.Fatalf("redirect back = %s", back)
			}
			tok, err := conf.Exchange(t.Context(), back.Query().Get("code"))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			raw, _ := tok.Extra("id_token").(string)
			parts := strings.Split(raw, ".")
			if len(parts) != 3 {
				t.Fatalf("no ID token in %v", tok)
			}
			payload, err := base64.RawURLEncoding.DecodeString(parts[1])
			var claims struct {
				Iss string   `json:"iss"`
				Sub string   `json:"sub"`
				AMR []string `json:"amr"`
			}
			if err == nil {
				err = json.Unmarshal(payload, &claims)
			}
			if err != nil || claims.Iss != p.Issuer() || claims.Sub != alice.ID || !slices.Equal(claims.AMR, []string{"pwd", "mfa"}) {
				t.Fatalf("ID token claims = %+v, %v", claims, err)
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	p := Start(t, Options{RedirectURIs: []string{callback}, People: []Person{alice}})
	conf := oauth2.Config{ClientID: p.ClientID, RedirectURL: callback, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: p.Issuer() + "/authorize"}}
	_, err := p.login(&http.Client{}, conf.AuthCodeURL("s"), alice.Username, "not-her-password")
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("login with a wrong password: %v", err)
	}
}
