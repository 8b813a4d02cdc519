package smart

// Capabilities are the SMART App Launch 2.2 capabilities smartauth
// advertises in smart-configuration: exactly what works end to end. Left
// out on purpose: context-standalone-encounter (a standalone launch cannot
// choose an encounter; launch/encounter is refused there).
func Capabilities() []string {
	return []string{
		"launch-ehr",
		"launch-standalone",
		"authorize-post",
		"client-public",
		"client-confidential-symmetric",
		"client-confidential-asymmetric",
		"sso-openid-connect",
		"context-passthrough-banner",
		"context-passthrough-style",
		"context-ehr-patient",
		"context-ehr-encounter",
		"context-standalone-patient",
		"permission-offline",
		"permission-online",
		"permission-patient",
		"permission-user",
		"permission-v1",
		"permission-v2",
	}
}

// ScopesSupported are example scopes for smart-configuration's
// scopes_supported: the fixed ones, and wildcard resource scopes of every
// context in both versions. Any scope of the grammar may be requested.
func ScopesSupported() []string {
	return []string{
		"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
		"offline_access", "online_access",
		"patient/*.cruds", "patient/*.rs", "user/*.cruds", "user/*.rs", "system/*.cruds", "system/*.rs",
		"patient/*.read", "patient/*.write", "patient/*.*", "user/*.read", "user/*.write", "user/*.*",
		"system/*.read", "system/*.write", "system/*.*",
	}
}
