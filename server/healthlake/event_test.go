package healthlake_test

import (
	"encoding/json"
	"testing"

	"github.com/smartauth/smartauth/server/healthlake"
)

// awsExampleResponse is the example response in AWS's HealthLake guide
// ("Making a FHIR REST API request on a SMART enabled HealthLake data
// store"), with its comments removed.
const awsExampleResponse = `{
	"authPayload": {
		"iss": "https://authorization-server-endpoint/oauth2/token",
		"aud": "https://healthlake.your-region.amazonaws.com/datastore/your-datastore-id/r4/",
		"iat": 1677115637,
		"nbf": 1677115637,
		"exp": 1997877061,
		"isAuthorized": "true",
		"uid": "100101",
		"scope": "system/*.*"
	},
	"iamRoleARN": "iam-role-arn"
}`

func TestResponseRoundTripsAWSExample(t *testing.T) {
	var r healthlake.Response
	if err := json.Unmarshal([]byte(awsExampleResponse), &r); err != nil {
		t.Fatal(err)
	}
	want := healthlake.Response{
		AuthPayload: healthlake.AuthPayload{
			Iss: "https://authorization-server-endpoint/oauth2/token",
			Aud: "https://healthlake.your-region.amazonaws.com/datastore/your-datastore-id/r4/",
			Iat: 1677115637, Nbf: 1677115637, Exp: 1997877061,
			IsAuthorized: true, UID: "100101", Scope: "system/*.*",
		},
		IAMRoleARN: "iam-role-arn",
	}
	if r != want {
		t.Fatalf("decoded\n got %+v\nwant %+v", r, want)
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	// Same names, same types, nothing more: compare as generic JSON.
	var got, example any
	json.Unmarshal(out, &got)
	json.Unmarshal([]byte(awsExampleResponse), &example)
	gotJSON, _ := json.Marshal(got)
	exampleJSON, _ := json.Marshal(example)
	if string(gotJSON) != string(exampleJSON) {
		t.Fatalf("encoded\n got %s\nwant %s", gotJSON, exampleJSON)
	}
}

func TestRefusalNamesNoRole(t *testing.T) {
	out, err := json.Marshal(healthlake.Response{})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"authPayload":{"isAuthorized":"false"}}` {
		t.Fatalf("refusal encodes as %s", out)
	}
}

func TestEventDecodesHealthLakeRequest(t *testing.T) {
	// The fields AWS's sample function reads from the event.
	in := `{"datastoreEndpoint": "https://healthlake.us-east-1.amazonaws.com/datastore/d1/r4/",
		"operationName": "read", "bearerToken": "Bearer i8hweunweunweofiwweoijewiwe"}`
	var ev healthlake.Event
	if err := json.Unmarshal([]byte(in), &ev); err != nil {
		t.Fatal(err)
	}
	want := healthlake.Event{
		DatastoreEndpoint: "https://healthlake.us-east-1.amazonaws.com/datastore/d1/r4/",
		OperationName:     "read", BearerToken: "Bearer i8hweunweunweofiwweoijewiwe",
	}
	if ev != want {
		t.Fatalf("got %+v, want %+v", ev, want)
	}
}

func TestFlagReadsStringsAndBooleans(t *testing.T) {
	cases := []struct {
		in      string
		want    healthlake.Flag
		wantErr bool
	}{
		{`"true"`, true, false},
		{`true`, true, false},
		{`"false"`, false, false},
		{`false`, false, false},
		{`"yes"`, false, true},
		{`1`, false, true},
		{`null`, false, false},
	}
	for _, tc := range cases {
		var f healthlake.Flag
		err := json.Unmarshal([]byte(tc.in), &f)
		if (err != nil) != tc.wantErr || f != tc.want {
			t.Errorf("%s: got %v, %v", tc.in, f, err)
		}
	}
}
