"""A labelled corpus for the PII engines: positives per entity and hard negatives.

Each positive is ``(kind, value, sentence)`` where ``sentence`` contains ``value``; a detector
passes when ``value`` is gone from the scrubbed sentence. Each negative is ``(label, token,
sentence)``; the engine passes when ``token`` survives scrubbing unchanged. Sentences mix
several tokens, so neighbours interact as they do in real text.

``test_gov_engine.py`` checks every entry and the targets (>= 99 % removed, >= 97 % kept);
``benchmarks/pii.py`` prints the rates of each engine, reported in the README.
"""

from __future__ import annotations

POSITIVES: list[tuple[str, str, str]] = []
NEGATIVES: list[tuple[str, str, str]] = []


def _pos(kind: str, templates: list[str], values: list[str]) -> None:
    for i, value in enumerate(values):
        POSITIVES.append((kind, value, templates[i % len(templates)].format(v=value)))


def _neg(label: str, templates: list[str], tokens: list[str]) -> None:
    for i, token in enumerate(tokens):
        NEGATIVES.append((label, token, templates[i % len(templates)].format(v=token)))


_pos(
    "EMAIL",
    [
        "Contact me at {v} for details.",
        "From: {v}",
        "send the invoice to <{v}> by Friday",
        '{{"user": {{"email": "{v}"}}}}',
        "cc:{v}; thanks",
    ],
    [
        "john.doe@example.com",
        "ana+billing@sub.example.co.uk",
        "x@y.io",
        "first_last@company-name.org",
        "O.Neil@Example.COM",
        "user123@mail.example.museum",
        "jürgen.müller@beispiel.de",
        "support@localhost-dev.example.net",
        "a.b.c.d@e-f.gh",
        "maria.garcia1987@gmail.com",
    ],
)
_pos(
    "PHONE",
    [
        "Call me on {v} tomorrow.",
        "phone: {v}",
        "You can reach the office at {v}.",
        "Mobile {v}, ask for Ana",
        "tel:{v}",
    ],
    [
        "+1 415 555 2671",
        "+1 (415) 555-2671",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "1-800-555-0199",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "020 7946 0958",
        "07700 900123",
        "+33 6 12 34 56 78",
        "01 23 45 67 89",
        "+49 30 12345678",
        "+49 (0)30 1234567",
        "030 1234 5678",
        "+34 612 345 678",
        "+39 06 1234 5678",
        "+81-3-1234-5678",
        "+91 98765 43210",
        "+919876543210",
        "+61 2 9876 5432",
        "+86 138 0013 8000",
        "+7 (495) 123-45-67",
        "+55 11 91234-5678",
        "0049 30 123456",
        "4155552671",
        "555-2671",
        "+1-202-555-0173",
        "(020) 7946 0958",
        "06 12 34 56 78",
        "+1-555-123-4567x890",
        "(555)123-4567",
        "555.123.4567 ext. 12",
        "001-555-123-4567",
        "+44(0)1632 960123",
        "0612345678",
        "+33 (0)1 23 45 67 89",
        "+49 (0) 1512 3456789",
        "98765 43210",
        "138 0013 8000",
        "030/1234567",
        "0151/123 45 67",
        "03-1234-5678",
        "0412 345 678",
        "(02) 9876 5432",
    ],
)
_pos(
    "CREDIT_CARD",
    [
        "card number {v} exp 12/27",
        "Paid with {v}.",
        '{{"pan": "{v}"}}',
        "my visa is {v}, cvv on the back",
    ],
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5500 0000 0000 0004",
        "5555555555554444",
        "2223003122003222",
        "3782 822463 10005",
        "378282246310005",
        "6011 1111 1111 1117",
        "6011000990139424",
        "3530111333300000",
        "30569309025904",
        "4012888888881881",
        "4222222222222",
        "6200000000000005",
        "5105 1051 0510 5100",
        "180061388939823",
        "213176125783127",
        "6304000000000000",
    ],
)
_pos(
    "IBAN",
    ["IBAN: {v}", "wire it to {v} please", "account {v}."],
    [
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "FR14 2004 1010 0505 0001 3M02 606",
        "ES91 2100 0418 4502 0005 1332",
        "NL91 ABNA 0417 1643 00",
        "IT60 X054 2811 1010 0000 0123 456",
        "CH93 0076 2011 6238 5295 7",
        "BE68 5390 0754 7034",
        "AT61 1904 3002 3457 3201",
        "PL61 1090 1014 0000 0712 1981 2874",
    ],
)
_pos(
    "US_SSN",
    ["SSN {v}", "social security number: {v}", "her ssn is {v}.", "id {v} on file"],
    [
        "123-45-6789",
        "078-05-1120",
        "219-09-9999",
        "536-22-1234",
        "001-01-0001",
        "899-99-9999",
        "123 45 6789",
        "457-55-5462",
    ],
)
POSITIVES.append(("US_SSN", "536221234", "SSN: 536221234"))
POSITIVES.append(("CREDIT_CARD", "4111 1111 1111 1111", "card 4111 1111 1111 1111 12/27 cvv 123"))
POSITIVES.append(("CREDIT_CARD", "5555 5555 5555 4444", "ref 12 5555 5555 5555 4444 123"))
_pos(
    "IP_ADDRESS",
    ["from {v}", "client ip={v} blocked", "ping {v}.", "host {v}:8080"],
    [
        "192.168.1.10",
        "10.0.0.1",
        "8.8.8.8",
        "172.16.254.1",
        "255.255.255.0",
        "203.0.113.42",
        "2001:db8::8a2e:370:7334",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "fe80::1ff:fe23:4567:890a",
        "::ffff:192.0.2.128",
    ],
)
_pos(
    "AWS_KEY",
    ["aws key {v}", "export AWS_ACCESS_KEY_ID={v}", "{v}"],
    [
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        "AKIA2E0A8F3B244C9986",
        "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    ],
)
_pos(
    "SECRET",
    [
        "aws_secret_access_key = {v}",
        'config: {{"password": "{v}"}}',
        "DB_PASSWORD={v}",
        "login with password: {v}",
        "my password is {v}",
        "api_key={v}&page=2",
        "Authorization: Bearer {v}",
        "postgres://admin:{v}@db.internal:5432/app",
        "client_secret: '{v}'",
        "token={v}",
    ],
    [
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "hunter2!",
        "S3cr3tP@ss",
        "correct-horse-battery",
        "Tr0ub4dor&3",
        "a1b2c3d4e5f6",
        "abcdef0123456789abcdef0123456789",
        "pa55w0rd",
        "9f8e7d6c5b4a",
        "tok_4f9a8b7c6d5e",
    ],
)
_pos(
    "SECRET",
    ["Authorization: Basic {v}", "curl -H 'Authorization: Bearer {v}' https://api"],
    ["dXNlcjpwYXNzd29yZA==", "0a1b2c3d4e5f6a7b8c9d0e1f"],
)
_pos(
    "GITHUB_TOKEN",
    ["token {v}", "git clone https://{v}@github.com/x/y", "GH_TOKEN={v}"],
    [
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP",
        "ghs_abcdefghijklmnopqrstuvwxyz0123456789",
    ],
)
_pos(
    "API_KEY",
    ["key {v}", "OPENAI_API_KEY={v}", "use {v} for the call"],
    [
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
        "sk-abcdefghij1234567890ABCDEFGHIJ",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "glpat-xxxxXXXX1234yyyyZZZZ",
    ],
)
_pos(
    "SLACK_TOKEN",
    ["slack {v}", "SLACK_BOT_TOKEN={v}", "post to {v}"],
    [
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxp-123456789012-123456789012-123456789012-abcdef0123456789abcdef0123456789",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ],
)
_pos(
    "JWT",
    ["Authorization: {v}", "cookie session={v}; path=/", "jwt {v}"],
    [
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "eyJhbGciOiJub25lIn0.eyJ1c2VyIjoiYWRtaW4ifQ.",
        "eyJraWQiOiIxIn0.eyJpc3MiOiJodHRwczovL2V4YW1wbGUuY29tIn0.abcDEF123_-xyz",
    ],
)
_pos(
    "PRIVATE_KEY",
    ["here is the key:\n{v}\nthanks", "{v}"],
    [
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"
        "aFDrBz9vFqU4yUqOQ+pTJIcpVwkXYiPHEfFhjnwXRnIEmGuC0Hd9OPeFp0ofz4sc\n"
        "-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
        "-----END PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
        "-----END OPENSSH PRIVATE KEY-----",
    ],
)

# --------------------------------------------------------------------------- hard negatives
_neg(
    "date",
    ["Delivered on {v}.", "due {v}", "meeting at {v} in room 4", "since {v}, prices rose"],
    [
        "2024-01-15",
        "15/01/2024",
        "01.02.2024",
        "1/2/24",
        "2024/03/31",
        "31-12-2023",
        "March 5, 2024",
        "2024-01-15T10:30:00Z",
        "20240115",
        "12.05.2024",
        "2023-11-02 14:05:33",
        "Q3 2024",
    ],
)
NEGATIVES.append(("date", "2024-01-15", "Call scheduled for 2024-01-15, phone first"))
NEGATIVES.append(("date", "15.01.2024", "call on 15.01.2024 at 10:30"))
NEGATIVES.append(("date", "03 04 2025", "Tel. appointment 03 04 2025"))
NEGATIVES.append(("date", "15/01/2024", "phone call on 15/01/2024"))
NEGATIVES.append(("ratio", "10/20/30/40", "split 10/20/30/40 between teams"))
NEGATIVES.append(("id", "12345 67890", "batch 12345 67890 done"))
NEGATIVES.append(("amount", "1 234 567", "the call cost 1 234 567 pesos"))
_neg(
    "time",
    ["at {v} sharp", "between {v} and noon", "logged {v}"],
    ["10:30", "12:30:45", "23:59:59.999", "9:05 am", "14h30", "00:00"],
)
_neg(
    "amount",
    ["total {v} incl. VAT", "costs {v}", "refund of {v} issued", "budget {v} for 2025"],
    [
        "$1,234.56",
        "€99.90",
        "1 234 567,89 €",
        "USD 12,500",
        "£3.50",
        "4,111.11",
        "1234.5678",
        "-42.17",
        "0.99",
        "1,000,000",
        "250 000 EUR",
        "12 345 678",
        "1.234.567,89 €",
        "12.345.678,90 EUR",
        "+5.3%",
        "+12.50",
    ],
)
_neg(
    "version",
    ["upgrade to {v} now", "built with {v}", "requires python {v}", "release {v} is out"],
    [
        "1.2.3",
        "v2.10.4",
        "3.11.9",
        "10.0.19041.1",
        "1.2.3-beta.1",
        "2.0.0-rc1",
        "4.1",
        "v1.2.3.4",
        "version 1.2.3.4",
        "0.12.3",
        "18.04.6",
        "2024.1.1",
        "Chrome 120.0.6099.109",
        "Windows 10.0.19045",
    ],
)
_neg(
    "id",
    ["order {v} shipped", "ticket {v} closed", "ref {v}", "see {v} for details"],
    [
        "ORD-2024-000123",
        "#123456789",
        "INV-00042",
        "A-1001",
        "1234567890",
        "0012345678",
        "987654321",
        "550e8400-e29b-41d4-a716-446655440000",
        "PO 4500012345",
        "TRK123456789US",
        "978-3-16-148410-0",
        "SKU 12-3456-78",
        "case 00123",
        "ID 1700000000000",
        "build 20240115.3",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "sha256:3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
        "a1b2c3d4",
        "2024-000123",
        "100-200-3000",
        "1705312200",
        "EIN 12-3456789",
        "123-456-789",
        "ts 1700000000123",
        "user_id=847362",
        "ORD-555-123-4567",
        "Order #555-123-4567",
        "INV-2024-00123",
        "9fceb02d0ae598e95dc970b74767f19372d61af8",
    ],
)
_neg(
    "invalid_card",
    ["card {v} was declined", "test number {v}", "{v} is not a card"],
    [
        "4111 1111 1111 1112",
        "4111111111111112",
        "5500 0000 0000 0005",
        "1234 5678 9012 3456",
        "0000 0000 0000 0000",
        "9999999999999995",
        "378282246310006",
        "6011111111111118",
        "1234567812345678",
    ],
)
_neg(
    "invalid_iban",
    ["IBAN {v} rejected", "bad account {v}"],
    ["GB82 WEST 1234 5698 7654 33", "DE89370400440532013001", "XX12 3456 7890 1234", "GB12"],
)
_neg(
    "invalid_ssn",
    ["number {v} is invalid", "ref {v}"],
    ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000"],
)
_neg(
    "not_ip",
    ["value {v}", "range {v}", "coords {v}"],
    ["256.1.1.1", "1.2.3", "999.999.999.999", "12:30:45", "00:1A:2B:3C:4D:5E", "3.14159"],
)
_neg(
    "number",
    ["{v} users signed up", "answer {v}", "x = {v}"],
    ["42", "100", "3.14", "1e10", "65536", "2048", "7", "31337", "8080", "443"],
)
_neg(
    "word",
    [
        "The {v} works fine.",
        "max_tokens=512 and {v}",
        "password reset for {v}",
        "{v}",
    ],
    [
        "sk-learn",
        "token_count: 42",
        "max_tokens=4096",
        "passwords are hashed",
        "bypass=true",
        "password: <hidden>",
        "api_key=${API_KEY}",
        "email me",
        "user at example dot com",
        "C++",
        "e.g.",
        "x86_64",
        "utf-8",
        "GPT-4o",
        "ISO 8601",
        "RFC 5322",
        "H2O",
        "COVID-19",
        "Boeing 737",
        "room 101",
    ],
)
