//! Static word lists for agent naming: the built-in themes and the Docker-style fallback vocabulary.
//!
//! Every entry must be a valid file name on its own: ASCII letters, digits and `-` only, at most 64
//! bytes, because agent names become directory and log-file names. Names are spelled without accents or
//! punctuation for the same reason ("Eowyn", "Mr-Meeseeks", "R2D2"). The order of every list is part of
//! the naming contract: changing it changes which names a given summon sequence produces.

use super::Theme;

/// The built-in themes, in the order they are listed to users.
pub(super) static THEMES: &[Theme] = &[
    Theme {
        id: "lotr",
        title: "The Lord of the Rings",
        tiers: &[
            &[
                "Frodo", "Sam", "Gandalf", "Aragorn", "Legolas", "Gimli", "Merry", "Pippin",
                "Boromir", "Bilbo",
            ],
            &[
                "Eowyn",
                "Faramir",
                "Treebeard",
                "Elrond",
                "Galadriel",
                "Arwen",
                "Theoden",
                "Eomer",
                "Radagast",
                "Gollum",
            ],
            &[
                "Sauron", "Saruman", "Nazgul-1", "Nazgul-2", "Nazgul-3", "Nazgul-4", "Nazgul-5",
                "Nazgul-6", "Nazgul-7", "Nazgul-8", "Nazgul-9",
            ],
        ],
    },
    Theme {
        id: "rick-and-morty",
        title: "Rick and Morty",
        tiers: &[
            &["Rick", "Morty", "Summer", "Beth", "Jerry", "Space-Beth"],
            &[
                "Mr-Meeseeks",
                "Birdperson",
                "Squanchy",
                "Unity",
                "Gearhead",
                "Krombopulos-Michael",
                "Noob-Noob",
                "Mr-Goldenfold",
            ],
            &[
                "Pickle-Rick",
                "Evil-Morty",
                "Tiny-Rick",
                "Doofus-Rick",
                "Mr-Nimbus",
                "Rick-Prime",
            ],
        ],
    },
    Theme {
        id: "santas-workshop",
        title: "Santa's Workshop",
        tiers: &[
            &[
                "Dasher", "Dancer", "Prancer", "Vixen", "Comet", "Cupid", "Donner", "Blitzen",
                "Rudolph",
            ],
            &[
                "Donner-2-The-Dominator",
                "Vixen-Unleashed",
                "Rudolph-Turbo",
                "Comet-Prime",
                "Blitzen-Max",
                "Dasher-Overdrive",
            ],
            &[
                "Jingle",
                "Tinsel",
                "Sprinkles",
                "Snowflake",
                "Pepper",
                "Sugarplum",
                "Bushy",
                "Shinny",
            ],
            &[
                "North-Pole-Ops",
                "Coal-Deployer",
                "Naughty-List-Auditor",
                "Chimney-Recon",
                "Sleigh-Logistics",
                "Cocoa-Command",
            ],
        ],
    },
    Theme {
        id: "talmudic",
        title: "Talmudic Sages",
        tiers: &[
            // The Tannaim, the sages of the Mishnah.
            &[
                "Hillel",
                "Shammai",
                "Akiva",
                "Gamliel",
                "Meir",
                "Yochanan-ben-Zakkai",
                "Yehuda-HaNasi",
                "Shimon-bar-Yochai",
            ],
            // The Amoraim, the sages of the Gemara.
            &[
                "Rav",
                "Shmuel",
                "Abaye",
                "Rava",
                "Rav-Ashi",
                "Ravina",
                "Rabbi-Yochanan",
                "Resh-Lakish",
            ],
            // The Rishonim, the medieval commentators.
            &[
                "Rashi",
                "Rambam",
                "Ramban",
                "Rabbeinu-Tam",
                "Rif",
                "Rosh",
                "Meiri",
                "Ibn-Ezra",
            ],
        ],
    },
    Theme {
        id: "greek-myth",
        title: "Greek Mythology",
        tiers: &[
            &[
                "Zeus",
                "Hera",
                "Poseidon",
                "Demeter",
                "Athena",
                "Apollo",
                "Artemis",
                "Ares",
                "Aphrodite",
                "Hephaestus",
                "Hermes",
                "Dionysus",
            ],
            &[
                "Heracles",
                "Perseus",
                "Theseus",
                "Achilles",
                "Odysseus",
                "Jason",
                "Atalanta",
                "Hector",
                "Orpheus",
                "Bellerophon",
            ],
            &[
                "Pegasus", "Cerberus", "Minotaur", "Hydra", "Medusa", "Chimera", "Griffin",
                "Cyclops", "Sphinx", "Phoenix",
            ],
        ],
    },
    Theme {
        id: "star-wars",
        title: "Star Wars",
        tiers: &[
            &[
                "Luke",
                "Leia",
                "Han",
                "Chewbacca",
                "Obi-Wan",
                "Yoda",
                "Ahsoka",
                "Rey",
                "Finn",
                "Poe",
            ],
            &["R2D2", "C3PO", "BB8", "K2SO", "Chopper", "IG11", "BD1"],
            &[
                "Lando",
                "Boba-Fett",
                "Din-Djarin",
                "Cassian",
                "Jyn",
                "Hondo",
                "Cad-Bane",
                "Jango-Fett",
                "Greedo",
            ],
            &[
                "Vader",
                "Palpatine",
                "Maul",
                "Dooku",
                "Kylo-Ren",
                "Plagueis",
            ],
        ],
    },
];

/// First half of the `{adjective}-{scientist}` fallback; iterated in this order, outer loop.
pub(super) static ADJECTIVES: &[&str] = &[
    "admiring", "bold", "brave", "calm", "clever", "dazzling", "eager", "elegant", "focused",
    "gentle", "happy", "jolly", "keen", "lucid", "nifty", "pensive", "quirky", "serene", "sharp",
    "stoic", "upbeat", "vibrant", "wise", "zealous",
];

/// Second half of the `{adjective}-{scientist}` fallback; iterated in this order, inner loop.
pub(super) static SCIENTISTS: &[&str] = &[
    "babbage", "bohr", "curie", "darwin", "dijkstra", "einstein", "euler", "faraday", "feynman",
    "franklin", "galileo", "goodall", "hopper", "hypatia", "kepler", "knuth", "lovelace",
    "meitner", "newton", "noether", "pasteur", "ritchie", "shannon", "turing",
];
